"""The update: a pure function of (TrainState, Batch), jitted once with shardings and donation.

Axis letters (`corea_jax.rl.rollout`): R rows (one completion each), T = P + C positions, P
prompt slots, C completion slots, V vocab.

Sequences are laid out as the sampler produces them: a left-padded prompt of P slots followed
by the completion of C slots (right-padded). Only the completion is scored: the hidden states
at slots P - 1 .. T - 2 predict the completion tokens, so the LM head (the largest activation,
[R, C, V]) is never applied to the prompt.

Gradient accumulation: the batch's R rows are split into `micro_batches` equal micro-batches
(strided, so each stays sharded like the batch: `split_micro_batches`) and a `lax.scan` sums
their gradients. Loss weights come from the whole batch (`grpo.loss_weights`),
so the accumulated gradient equals the full-batch one.

Non-finite loss, gradients or updated parameters: the step keeps the old parameters and
optimizer state and reports `finite = 0`; the loop turns that into an error before anything is
checkpointed.

Modes: "grpo" (the clipped policy loss of `corea_jax.rl.grpo`) and "sft" (token cross-entropy on
the completion, for the supervised warm-up on reference traces).

Mixed precision. The TrainState holds master parameters in `optim.master_dtype` (float32 by
default) and AdamW's moments in the same dtype; the model's own dtype (`config.model.dtype`,
bf16 in the paper configs) is the compute dtype. Inside the step the master copy is cast once
to the compute dtype (`compute_copy`, sharded like the master, so FSDP gathers 16-bit weights),
the micro-batches' forward/backward run on that copy, each micro-batch's gradient is added to a
master-dtype accumulator, and AdamW updates the master copy. Logits, log-softmax and the loss
are float32 whatever the compute dtype (`CausalLM.logits`). A bf16 state would lose the update
itself: at lr 1e-6, `w + update` rounds back to `w` for every weight above about 1e-3. When the
compute dtype equals the master dtype (the float32 CPU runs) every cast is the identity and the
step computes exactly what it computed before master weights existed.

Memory per parameter, per device under FSDP (divide by the fsdp axis): 12 bytes held across
steps with a float32 master (4 master + 4 + 4 AdamW moments); inside the update another 2
(the bf16 compute copy), 4 (the float32 gradient accumulator) and 2 (one micro-batch's bf16
gradient), about 20 at the update's peak before activations.

The sampler's weights ("no weight sync": rollouts read the trainer's parameters). The state
keeps only the master copy; the loop casts it to the compute dtype once per rollout step
(`compute_copy`, jitted, an identity when the dtypes agree) and hands that to the sampler and
the evaluation. The alternative, the step also returning a compute copy, would keep 2 more
bytes per parameter alive through every update, the memory-bound phase, and with
`num_iterations` > 1 cast after updates whose copy nobody samples from; the one extra cast per
rollout step reads 4 and writes 2 bytes per parameter, nothing next to a rollout.

Memory options (`config.compute`, `UpdateComputeConfig`): per-layer rematerialisation and the
attention kernel (`corea_jax.models.compute`), and token log-probs in chunks of the completion
(`corea_jax.models.logprobs`). Their defaults are the plain path, op for op.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from corea_jax.errors import CoreaError
from corea_jax.models.compute import ATTENTION_CHOICES, REMAT_CHOICES, ComputeConfig
from corea_jax.models.logprobs import chunked_token_logprobs
from corea_jax.models.transformer import causal_mask, positions_from_mask
from corea_jax.rl import grpo


class TrainState(NamedTuple):
    updates: jax.Array  # [] int32, optimizer updates applied (num_iterations per rollout step)
    params: nnx.State  # the master copy, in optim.master_dtype
    opt_state: optax.OptState  # AdamW's moments take the master copy's dtype and shardings


class Batch(NamedTuple):
    """One rollout batch, R rows. Built on the host by `make_batch`."""

    tokens: jax.Array  # [R, T] int32: prompt (left-padded, P slots) + completion (C slots)
    valid: jax.Array  # [R, T] bool: real tokens
    weights: jax.Array  # [R, C] float32 loss weights (0 off the completion)
    advantages: jax.Array  # [R, C] float32 per completion token (unused by "sft")
    old_logprobs: jax.Array  # [R, C] float32 rollout-policy log-probs (unused by "sft")
    ref_logprobs: jax.Array | None = None  # [R, C] reference-model log-probs; only if beta > 0


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The `config.optim` section: AdamW with warm-up then constant or cosine decay, after
    global-norm clipping. The decay's length is the run's `train.steps` (`make_optimizer`).
    `warmup_steps` counts rollout steps, like `train.steps`: the schedule itself advances once
    per update, `num_iterations` times per rollout step, so its shape over the run does not
    depend on `num_iterations`.

    Defaults (PAPER.md leaves them open): lr 1e-6 (the 7B setting; 3e-6 for 1.5B), no weight
    decay, clip at 1.0, constant after a 10-step linear warm-up. `master_dtype` is the dtype of
    the TrainState's parameters and AdamW moments (float32; see the module docstring); the
    forward/backward runs in the model's dtype.
    """

    learning_rate: float = 1e-6
    warmup_steps: int = 10
    schedule: str = "constant"  # "constant" | "cosine"
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    master_dtype: str = "float32"

    def __post_init__(self):
        if self.schedule not in ("constant", "cosine"):
            raise CoreaError(f"optim.schedule {self.schedule!r}: expected constant or cosine")
        if self.master_dtype not in ("float32", "bfloat16", "float16"):
            raise CoreaError(
                f"optim.master_dtype {self.master_dtype!r}: expected float32, bfloat16 or float16"
            )


@dataclasses.dataclass(frozen=True)
class UpdateComputeConfig:
    """The `config.compute` section: how the update computes, for memory; never what.

    remat          per-layer rematerialisation policy: "none" | "full" | "save_dots" |
                   "save_all_dots" (`corea_jax.models.compute.REMAT_POLICIES`).
    attention      "auto" | "xla" | "dot_product_attention" | "splash"; "auto" picks by the
                   mesh's platform (xla on CPU, cuDNN flash attention on GPU, splash on TPU).
    logprob_chunk  completion slots per chunk of the LM head + log-softmax (0: unchunked).
    scan_layers    the decoder layers as one `lax.scan` over their stacked parameters
                   (`corea_jax.models.compute`): one layer compiled, and one layer's gathered
                   weights alive at a time, for two sharded copies of the layer parameters.

    The defaults are the plain path on CPU, op for op (the paper configs set their own).
    """

    remat: str = "none"
    attention: str = "auto"
    logprob_chunk: int = 0
    scan_layers: bool = False

    def __post_init__(self):
        if self.remat not in REMAT_CHOICES:
            raise CoreaError(f"compute.remat {self.remat!r}: expected one of {REMAT_CHOICES}")
        if self.attention not in ATTENTION_CHOICES:
            raise CoreaError(
                f"compute.attention {self.attention!r}: expected one of {ATTENTION_CHOICES}"
            )

    def model_compute(self, mesh=None) -> ComputeConfig:
        """The decoder's `ComputeConfig` on `mesh` (splash runs its shard_map over it)."""
        return ComputeConfig(
            remat=self.remat, attention=self.attention, scan_layers=self.scan_layers, mesh=mesh
        )


def make_optimizer(
    cfg: OptimConfig, total_steps: int = 1000, updates_per_step: int = 1
) -> optax.GradientTransformation:
    """The optimizer of `cfg`. `total_steps` (the run's `train.steps`) is the cosine's length in
    rollout steps; `updates_per_step` (`train.num_iterations`) the updates each one applies.
    The schedule: `learning_rate_schedule`."""
    return optax.chain(
        optax.clip_by_global_norm(cfg.max_grad_norm),
        optax.adamw(
            learning_rate_schedule(cfg, total_steps, updates_per_step), b1=cfg.b1, b2=cfg.b2,
            eps=cfg.eps, weight_decay=cfg.weight_decay,
        ),
    )  # fmt: skip


def learning_rate_schedule(
    cfg: OptimConfig, total_steps: int = 1000, updates_per_step: int = 1
) -> optax.Schedule:
    """The learning rate as a function of the update count (optax's, in the optimizer state):
    warm-up over `warmup_steps x updates_per_step` updates, decay over `total_steps x
    updates_per_step`, so update u of a run sees the rate of rollout step u / updates_per_step.
    """
    warmup = cfg.warmup_steps * updates_per_step
    total = total_steps * updates_per_step
    if cfg.schedule == "cosine":
        if cfg.warmup_steps >= total_steps:
            raise CoreaError(
                f"optim.warmup_steps={cfg.warmup_steps}: the cosine schedule needs fewer warm-up"
                f" steps than train.steps={total_steps}"
            )
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, cfg.learning_rate, max(warmup, 1), max(total, 2)
        )
    elif cfg.warmup_steps > 0:
        schedule = optax.join_schedules(
            [
                optax.linear_schedule(0.0, cfg.learning_rate, warmup),
                optax.constant_schedule(cfg.learning_rate),
            ],
            [warmup],
        )
    else:
        schedule = optax.constant_schedule(cfg.learning_rate)
    return schedule


def compute_copy(params, dtype):
    """`params` with every floating leaf cast to `dtype`; `params` itself when they all have it
    (so a float32 run never copies). Usable inside and outside jit."""
    dtype = jnp.dtype(dtype)
    floating = lambda x: jnp.issubdtype(x.dtype, jnp.floating)  # noqa: E731
    if all(x.dtype == dtype for x in jax.tree.leaves(params) if floating(x)):
        return params
    return jax.tree.map(lambda x: x.astype(dtype) if floating(x) else x, params)


def init_train_state(
    optimizer: optax.GradientTransformation,
    params: nnx.State,
    param_shardings,
    mesh,
    *,
    master_dtype=None,
) -> tuple[TrainState, TrainState]:
    """A fresh TrainState placed on `mesh`, and its shardings (for `jit_train_step`).

    `params` (the model's, in its compute dtype) become the master copy in `master_dtype`
    (None: their own dtype), with the same shardings; the optimizer is initialised on it.

    The optimizer state's parameter-shaped parts (Adam's mu and nu, a momentum trace) take the
    shardings of the parameters they mirror; everything else (counts) is replicated. A plain
    `jax.jit(optimizer.init)(params)` does not do this: the zeros do not depend on the params'
    values, so XLA puts every one of them, unsharded, on the first device.
    """
    master = (lambda p: p) if master_dtype is None else (lambda p: compute_copy(p, master_dtype))
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_shardings = optax.tree_map_params(
        optimizer,
        lambda _, sharding: sharding,
        jax.eval_shape(lambda p: optimizer.init(master(p)), params),
        param_shardings,
        transform_non_params=lambda _: replicated,
    )
    shardings = TrainState(replicated, param_shardings, opt_shardings)

    def init(p):
        p = master(p)
        return TrainState(jnp.zeros((), jnp.int32), p, optimizer.init(p))

    return jax.jit(init, out_shardings=shardings)(params), shardings


def completion_logprobs(
    graphdef,
    params,
    tokens,
    valid,
    completion_len: int,
    compute: ComputeConfig | None = None,
    logprob_chunk: int = 0,
):
    """tokens, valid [R, T] -> teacher-forced log-probs and entropies of the last C =
    `completion_len` slots: [R, C] each, float32.

    `compute` (remat, attention kernel) and `logprob_chunk` (`chunked_token_logprobs`) change
    how, never what; None and 0 are the plain path."""
    model = nnx.merge(graphdef, params)
    # The fused attention kernels take the rows' [R, T] valid mask (meaning causal_mask(valid)).
    mask = causal_mask(valid) if compute is None else valid
    hidden, _ = model.hidden_states(tokens, positions_from_mask(valid), mask, compute=compute)
    p = tokens.shape[1] - completion_len
    if logprob_chunk > 0:
        return chunked_token_logprobs(model, hidden[:, p - 1 : -1], tokens[:, p:], logprob_chunk)
    logits = model.logits(hidden[:, p - 1 : -1])
    return grpo.token_logprobs(logits, tokens[:, p:]), grpo.token_entropy(logits)


def _micro_loss(params, graphdef, mb: Batch, loss_config, mode, compute, logprob_chunk):
    c = mb.weights.shape[1]
    logprobs, entropy = completion_logprobs(
        graphdef, params, mb.tokens, mb.valid, c, compute, logprob_chunk
    )
    if mode == "sft":
        loss = -jnp.sum(logprobs * mb.weights)
        metrics = {"nll": loss}
    else:
        loss, metrics = grpo.policy_loss(
            logprobs, mb.old_logprobs, mb.advantages, mb.weights, loss_config, mb.ref_logprobs
        )
    metrics = dict(metrics, entropy=jnp.sum(entropy * mb.weights), loss=loss)
    return loss, metrics


def split_micro_batches(batch: Batch, micro_batches: int) -> Batch:
    """[R, ...] -> [M, R / M, ...] for M = `micro_batches`: micro-batch m holds rows m, m + M,
    m + 2M, ... (strided, not contiguous).

    Why strided: the rows are sharded over the mesh's data x fsdp devices in contiguous blocks.
    Split contiguously, micro-batch m would be the rows of only a few devices, and XLA would
    reshard it to all of them, or leave the others computing replicated copies, in every scan
    iteration (on an 8-device CPU mesh, the update's FLOPs per device grew with M: 2.15x at M =
    8 on a 2x2x2 mesh). With the stride, each device's block of R / D rows, when M divides it,
    gives every micro-batch R / (M x D) of its own rows: the reshape moves no data and each
    micro-batch is as sharded as the batch. Any split gives the same loss and gradient (the loss
    weights come from the whole batch), up to the order of the float sums.
    """
    rows = batch.tokens.shape[0]
    return jax.tree.map(
        lambda x: jnp.swapaxes(x.reshape(rows // micro_batches, micro_batches, *x.shape[1:]), 0, 1),
        batch,
    )


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def train_step(
    graphdef,
    state: TrainState,
    batch: Batch,
    *,
    optimizer: optax.GradientTransformation,
    loss_config: grpo.LossConfig,
    mode: str = "grpo",
    micro_batches: int = 1,
    compute_dtype=None,
    compute: ComputeConfig | None = None,
    logprob_chunk: int = 0,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update from one batch (gradients accumulated over micro-batches).

    The forward/backward runs on the master parameters cast to `compute_dtype` (None: the
    master's own); gradients accumulate in the master dtype. `compute` and `logprob_chunk`:
    `completion_logprobs`.
    """
    rows = batch.tokens.shape[0]
    if rows % micro_batches:
        raise CoreaError(f"batch of {rows} rows does not split into {micro_batches} micro-batches")
    micro = split_micro_batches(batch, micro_batches)
    params = state.params if compute_dtype is None else compute_copy(state.params, compute_dtype)
    loss_fn = functools.partial(
        _micro_loss, loss_config=loss_config, mode=mode, compute=compute,
        logprob_chunk=logprob_chunk,
    )  # fmt: skip
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def accumulate(carry, mb):
        grads, metrics = carry
        (_, m), g = grad_fn(params, graphdef, Batch(*mb))
        add = lambda total, g: total + g.astype(total.dtype)  # noqa: E731  (master dtype)
        return (jax.tree.map(add, grads, g), jax.tree.map(jnp.add, metrics, m)), None

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    metric_shapes = jax.eval_shape(
        lambda: grad_fn(params, graphdef, jax.tree.map(lambda x: x[0], micro))[0][1]
    )
    metric_zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes)
    (grads, metrics), _ = jax.lax.scan(accumulate, (zeros, metric_zeros), tuple(micro))

    grad_norm = optax.global_norm(grads)
    updates, new_opt = optimizer.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    # Finite loss and gradients are not enough: an overflowing update (a huge learning rate)
    # would still write inf/nan parameters, so the new parameters are checked too.
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm) & _all_finite(new_params)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
    new_state = TrainState(
        updates=state.updates + finite.astype(jnp.int32),
        params=keep(new_params, state.params),
        opt_state=keep(new_opt, state.opt_state),
    )
    metrics = dict(metrics, grad_norm=grad_norm, finite=finite.astype(jnp.float32))
    return new_state, metrics


def jit_train_step(
    graphdef,
    state_shardings,
    batch_sharding,
    mesh,
    *,
    optimizer,
    loss_config,
    mode="grpo",
    micro_batches=1,
    compute_dtype=None,
    compute: UpdateComputeConfig | None = None,
):
    """`train_step` jitted once: state donated, in/out shardings fixed, metrics replicated.

    `compute_dtype`: the forward/backward's dtype (the model's; None: the master's).
    `compute`: the memory options (None: `UpdateComputeConfig()`, the plain path)."""
    compute = UpdateComputeConfig() if compute is None else compute
    fn = functools.partial(
        train_step, graphdef, optimizer=optimizer, loss_config=loss_config, mode=mode,
        micro_batches=micro_batches, compute_dtype=compute_dtype,
        compute=compute.model_compute(mesh), logprob_chunk=compute.logprob_chunk,
    )  # fmt: skip
    return jax.jit(
        fn,
        in_shardings=(state_shardings, batch_sharding),
        out_shardings=(state_shardings, NamedSharding(mesh, PartitionSpec())),
        donate_argnums=(0,),
        compiler_options=update_compiler_options(mesh.devices.flat[0].platform),
    )


# XLA's CPU backend hands dots to YNNPACK; by default it also takes some elementwise fusions,
# which in the backward pass become transposing copies (silu', RoPE) between the weight-gradient
# dots. Restricting YNNPACK to dot and reduce fusions made the update of the TRL benchmark's
# model (benchmarks/grpo_step.py) 24% faster on a 2-core CPU. The sampler keeps the default:
# there the restriction made decoding slower. Per-program options, so nothing else changes.
CPU_UPDATE_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"
}


def update_compiler_options(platform: str) -> dict[str, str] | None:
    """XLA options for the update's program on `platform` (None: XLA's defaults)."""
    return dict(CPU_UPDATE_OPTIONS) if platform == "cpu" else None


def row_token_advantages(advantages, rows: int, completion_len: int) -> np.ndarray:
    """None, [R] or [R, C] advantages -> [R, C] float32 (None: zeros)."""
    if advantages is None:
        return np.zeros((rows, completion_len), np.float32)
    adv = np.asarray(advantages, np.float32)
    if adv.shape == (rows,):
        adv = adv[:, None]
    elif adv.shape != (rows, completion_len):
        raise CoreaError(
            f"advantages of shape {adv.shape}: expected [{rows}] or [{rows}, {completion_len}]"
        )
    return np.ascontiguousarray(np.broadcast_to(adv, (rows, completion_len)))


def make_batch(
    prompts,
    prompt_index,
    completions,
    lengths,
    *,
    prompt_slots: int,
    loss_config: grpo.LossConfig,
    advantages=None,
    old_logprobs=None,
    ref_logprobs=None,
    pad_id: int = 0,
) -> Batch:
    """Host-side: lays out R rows as [left-padded prompt (P) | completion (C)], numpy arrays.

    Args:
      prompts: the B prompts as token lists; row r uses prompts[prompt_index[r]].
      completions: [R, C] sampled tokens; lengths [R] how many are real.
      advantages: [R, C] per token, [R] one per completion (broadcast to [R, C]: the Batch
        always holds [R, C], so one update compiles for both), or None (SFT: zeros);
      old_logprobs: [R, C] or None (zeros);
      ref_logprobs: [R, C] under the reference model (KL penalty, beta > 0) or None.
    """
    completions = np.asarray(completions, np.int32)
    rows, c = completions.shape
    tokens = np.full((rows, prompt_slots + c), pad_id, np.int32)
    valid = np.zeros((rows, prompt_slots + c), bool)
    for r in range(rows):
        prompt = prompts[int(prompt_index[r])]
        if len(prompt) > prompt_slots:
            raise CoreaError(f"prompt of {len(prompt)} tokens exceeds {prompt_slots} slots")
        tokens[r, prompt_slots - len(prompt) : prompt_slots] = prompt
        valid[r, prompt_slots - len(prompt) : prompt_slots] = True
        tokens[r, prompt_slots : prompt_slots + lengths[r]] = completions[r, : lengths[r]]
        valid[r, prompt_slots : prompt_slots + lengths[r]] = True
    mask = valid[:, prompt_slots:].astype(np.float32)
    weights = np.asarray(grpo.loss_weights(jnp.asarray(mask), loss_config), np.float32)
    return Batch(
        tokens=tokens,
        valid=valid,
        weights=weights,
        advantages=row_token_advantages(advantages, rows, c),
        old_logprobs=np.zeros((rows, c), np.float32)
        if old_logprobs is None
        else np.asarray(old_logprobs, np.float32),
        ref_logprobs=None if ref_logprobs is None else np.asarray(ref_logprobs, np.float32),
    )

"""The update: a pure function of (TrainState, Batch), jitted once with shardings and donation.

Axis letters (`corea_jax.rl.rollout`): R rows (one completion each), T = P + C positions, P
prompt slots, C completion slots, V vocab.

Sequences are laid out as the sampler produces them: a left-padded prompt of P slots followed
by the completion of C slots (right-padded). Only the completion is scored: the hidden states
at slots P - 1 .. T - 2 predict the completion tokens, so the LM head (the largest activation,
[R, C, V]) is never applied to the prompt.

Gradient accumulation: the batch's R rows are split into `micro_batches` equal micro-batches and a
`lax.scan` sums their gradients. Loss weights come from the whole batch (`grpo.loss_weights`),
so the accumulated gradient equals the full-batch one.

Non-finite loss, gradients or updated parameters: the step keeps the old parameters and
optimizer state and reports `finite = 0`; the loop turns that into an error before anything is
checkpointed.

Modes: "grpo" (the clipped policy loss of `corea_jax.rl.grpo`) and "sft" (token cross-entropy on
the completion, for the supervised warm-up on reference traces).
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
from corea_jax.models.transformer import causal_mask, positions_from_mask
from corea_jax.rl import grpo


class TrainState(NamedTuple):
    step: jax.Array  # [] int32, updates applied
    params: nnx.State
    opt_state: optax.OptState


class Batch(NamedTuple):
    """One rollout batch, R rows. Built on the host by `make_batch`."""

    tokens: jax.Array  # [R, T] int32: prompt (left-padded, P slots) + completion (C slots)
    valid: jax.Array  # [R, T] bool: real tokens
    weights: jax.Array  # [R, C] float32 loss weights (0 off the completion)
    advantages: jax.Array  # [R] float32 (unused by "sft")
    old_logprobs: jax.Array  # [R, C] float32 rollout-policy log-probs (unused by "sft")
    ref_logprobs: jax.Array | None = None  # [R, C] reference-model log-probs; only if beta > 0


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The `config.optim` section: AdamW with warm-up then constant or cosine decay, after
    global-norm clipping. The decay's length is the run's `train.steps` (`make_optimizer`).

    Defaults (PAPER.md leaves them open): lr 1e-6 (the 7B setting; 3e-6 for 1.5B), no weight
    decay, clip at 1.0, constant after a 10-step linear warm-up.
    """

    learning_rate: float = 1e-6
    warmup_steps: int = 10
    schedule: str = "constant"  # "constant" | "cosine"
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float = 1.0

    def __post_init__(self):
        if self.schedule not in ("constant", "cosine"):
            raise CoreaError(f"optim.schedule {self.schedule!r}: expected constant or cosine")


def make_optimizer(cfg: OptimConfig, total_steps: int = 1000) -> optax.GradientTransformation:
    """The optimizer of `cfg`; `total_steps` (the run's `train.steps`) is the cosine's length."""
    if cfg.schedule == "cosine":
        if cfg.warmup_steps >= total_steps:
            raise CoreaError(
                f"optim.warmup_steps={cfg.warmup_steps}: the cosine schedule needs fewer warm-up"
                f" steps than train.steps={total_steps}"
            )
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, cfg.learning_rate, max(cfg.warmup_steps, 1), max(total_steps, 2)
        )
    elif cfg.warmup_steps > 0:
        schedule = optax.join_schedules(
            [
                optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps),
                optax.constant_schedule(cfg.learning_rate),
            ],
            [cfg.warmup_steps],
        )
    else:
        schedule = optax.constant_schedule(cfg.learning_rate)
    return optax.chain(
        optax.clip_by_global_norm(cfg.max_grad_norm),
        optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay),
    )


def init_train_state(
    optimizer: optax.GradientTransformation, params: nnx.State, param_shardings, mesh
) -> tuple[TrainState, TrainState]:
    """A fresh TrainState placed on `mesh`, and its shardings (for `jit_train_step`).

    The optimizer state's parameter-shaped parts (Adam's mu and nu, a momentum trace) take the
    shardings of the parameters they mirror; everything else (counts) is replicated. A plain
    `jax.jit(optimizer.init)(params)` does not do this: the zeros do not depend on the params'
    values, so XLA puts every one of them, unsharded, on the first device.
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_shardings = optax.tree_map_params(
        optimizer,
        lambda _, sharding: sharding,
        jax.eval_shape(optimizer.init, params),
        param_shardings,
        transform_non_params=lambda _: replicated,
    )
    shardings = TrainState(replicated, param_shardings, opt_shardings)
    init = lambda p: TrainState(jnp.zeros((), jnp.int32), p, optimizer.init(p))  # noqa: E731
    return jax.jit(init, out_shardings=shardings)(params), shardings


def completion_logprobs(graphdef, params, tokens, valid, completion_len: int):
    """tokens, valid [R, T] -> teacher-forced log-probs and entropies of the last C =
    `completion_len` slots: [R, C] each."""
    model = nnx.merge(graphdef, params)
    hidden, _ = model.hidden_states(tokens, positions_from_mask(valid), causal_mask(valid))
    p = tokens.shape[1] - completion_len
    logits = model.logits(hidden[:, p - 1 : -1])
    return grpo.token_logprobs(logits, tokens[:, p:]), grpo.token_entropy(logits)


def _micro_loss(params, graphdef, mb: Batch, loss_config, mode):
    c = mb.weights.shape[1]
    logprobs, entropy = completion_logprobs(graphdef, params, mb.tokens, mb.valid, c)
    if mode == "sft":
        loss = -jnp.sum(logprobs * mb.weights)
        metrics = {"nll": loss}
    else:
        loss, metrics = grpo.policy_loss(
            logprobs, mb.old_logprobs, mb.advantages, mb.weights, loss_config, mb.ref_logprobs
        )
    metrics = dict(metrics, entropy=jnp.sum(entropy * mb.weights), loss=loss)
    return loss, metrics


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
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update from one batch (gradients accumulated over micro-batches)."""
    rows = batch.tokens.shape[0]
    if rows % micro_batches:
        raise CoreaError(f"batch of {rows} rows does not split into {micro_batches} micro-batches")
    micro = jax.tree.map(
        lambda x: x.reshape(micro_batches, rows // micro_batches, *x.shape[1:]), batch
    )
    grad_fn = jax.value_and_grad(_micro_loss, has_aux=True)

    def accumulate(carry, mb):
        grads, metrics = carry
        (_, m), g = grad_fn(state.params, graphdef, Batch(*mb), loss_config, mode)
        return (jax.tree.map(jnp.add, grads, g), jax.tree.map(jnp.add, metrics, m)), None

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    metric_shapes = jax.eval_shape(
        lambda: grad_fn(state.params, graphdef, jax.tree.map(lambda x: x[0], micro),
                        loss_config, mode)[0][1]
    )  # fmt: skip
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
        step=state.step + finite.astype(jnp.int32),
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
):
    """`train_step` jitted once: state donated, in/out shardings fixed, metrics replicated."""
    fn = functools.partial(
        train_step, graphdef, optimizer=optimizer, loss_config=loss_config, mode=mode,
        micro_batches=micro_batches,
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
      advantages: [R] (GRPO) or None (SFT: zeros); old_logprobs [R, C] or None (zeros);
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
        advantages=np.zeros(rows, np.float32)
        if advantages is None
        else np.asarray(advantages, np.float32),
        old_logprobs=np.zeros((rows, c), np.float32)
        if old_logprobs is None
        else np.asarray(old_logprobs, np.float32),
        ref_logprobs=None if ref_logprobs is None else np.asarray(ref_logprobs, np.float32),
    )

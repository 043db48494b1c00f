"""Will a training run fit? Its update and rollout compiled ahead of time for a device mesh.

`plan_run(workload, run, devices)` builds the trainer's own programs over abstract inputs
(`nnx.eval_shape` model, `jax.ShapeDtypeStruct` state and batch carrying their shardings, so no
weight is materialised), compiles them for `devices` (a named TPU slice from
`corea_jax.parallel.aot.topology_devices`, or this host's devices) and reads per-device memory
and cost. The programs are the trainer's, imported, not re-implemented:

- update: `corea_jax.rl.batch.StepCache` -> `train_step.jit_train_step` with the options the
  training loop gives it (all micro-batches, the compute dtype and `config.compute`: remat,
  attention kernel, log-prob chunks), on the TrainState of `train_step.init_train_state`
  (master weights and AdamW moments in `optim.master_dtype`), R = B x G rows of P + C slots,
  the state donated;
- rollout, in three programs of `corea_jax.sampling.sampler`: `prefill` of the B prompts into a
  cache of the first decode segment, repeated G times to R rows; `grow_cache` from the last but
  one segment to the full S = P + C slots (both caches are live then); and one `decode_step`
  with the full cache (donated). Each takes the whole TrainState as an argument, because it
  stays on the device while the sampler runs, and the sampler's own parameters
  (`train_step.compute_copy` of the master copy, when its dtype differs).

Per device the plan reports the state (parameters + optimizer), each program's total (its
arguments, outputs not written in place, temporaries), the peak over programs against the
chip's HBM, FLOPs per step and a roofline step time: the update's micro-batch scan body is
counted once by XLA and scaled here by `micro_batches` (the optimizer, outside the loop, is
scaled with it: an overcount under 1% at these shapes); the rollout is prefill + C decode steps
each reading the full cache (an upper bound: the sampler's segments read less, and rows stop
early). Collectives are not timed: the roofline is optimistic on many chips.

With `compute.scan_layers` the layer loop's body is also counted once; the update's FLOPs and
bytes are then taken from two small compiles of the same update with 1 and 2 decoder layers
unrolled (`layer_extrapolated_cost`): one layer costs the difference, everything else the
1-layer figure minus it, so L layers cost F1 + (L - 1) x (F2 - F1). Its memory is the scanned
program's own.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from corea_jax.models import LayerCache, abstract_model, param_shardings
from corea_jax.models.config import ModelConfig
from corea_jax.models.scratch import ScratchModel
from corea_jax.parallel.aot import Chip, OutOfMemory, ProgramCost, chip_of, compile_program
from corea_jax.parallel.aot import roofline_seconds as roofline
from corea_jax.parallel.sharding import make_mesh, named_sharding
from corea_jax.rl.batch import StepCache
from corea_jax.rl.config import RunConfig
from corea_jax.rl.train_step import Batch, compute_copy, init_train_state, make_optimizer
from corea_jax.sampling.sampler import decode_step, grow_cache, prefill, segment_ends


@dataclasses.dataclass(frozen=True)
class Workload:
    """The shapes of one training step: B prompts x G samples = R rows of P + C slots."""

    model: ModelConfig
    dtype: str  # the model's parameter dtype (config.model.dtype)
    prompts: int  # B
    group_size: int  # G
    prompt_slots: int  # P, a sampler bucket
    completion_slots: int  # C, a sampler bucket
    micro_batches: int
    mesh_shape: tuple[int, int, int]  # ('data', 'fsdp', 'tensor'), one entry may be -1
    decode_segments: int = 4  # the sampler's default

    @property
    def rows(self) -> int:
        return self.prompts * self.group_size


@dataclasses.dataclass(frozen=True)
class Plan:
    """Per-device figures of a run on a mesh: the state and each compiled program."""

    chip: Chip
    devices: int
    mesh: dict[str, int]
    micro_batches: int  # the update's loop trip count
    completion_slots: int  # C: decode steps of the rollout
    param_bytes: int
    optimizer_bytes: int
    programs: tuple[ProgramCost, ...]
    refused: str | None = None  # the compiler's messages, when programs did not compile

    @property
    def peak_bytes(self) -> int:
        return max((p.total_bytes for p in self.programs), default=0)

    @property
    def headroom(self) -> float:
        return 1.0 - self.peak_bytes / self.chip.hbm_bytes

    def fits(self, min_headroom: float = 0.0) -> bool:
        return self.refused is None and self.headroom >= min_headroom

    def _program(self, name: str) -> ProgramCost | None:
        return next((p for p in self.programs if p.name == name), None)

    def update_cost(self) -> tuple[float, float]:
        """(FLOPs, bytes accessed) of one update per device: the scan body x micro-batches."""
        update = self._program("update")
        if update is None:
            return 0.0, 0.0
        return update.flops * self.micro_batches, update.bytes_accessed * self.micro_batches

    def update_seconds(self, chip: Chip | None = None) -> float:
        return roofline(*self.update_cost(), chip or self.chip)

    def rollout_flops(self) -> float:
        pre, step = self._program("rollout prefill"), self._program("rollout decode step")
        return pre.flops + self.completion_slots * step.flops if pre and step else 0.0

    def rollout_seconds(self, chip: Chip | None = None) -> float:
        """Prefill + C decode steps, each reading the full cache (an upper bound)."""
        chip = chip or self.chip
        pre, step = self._program("rollout prefill"), self._program("rollout decode step")
        if not (pre and step):
            return 0.0
        decode = roofline(step.flops, step.bytes_accessed, chip)
        return roofline(pre.flops, pre.bytes_accessed, chip) + self.completion_slots * decode


def scratch_model_config(spec: ScratchModel) -> ModelConfig:
    """The architecture `build_scratch_model` gives `spec`, with the BPE target as vocabulary
    (the trained tokenizer may stop a little short of it)."""
    llama = spec.family == "llama"
    return ModelConfig(
        family=spec.family, vocab_size=spec.vocab_size, hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_layers=spec.num_layers,
        num_heads=spec.num_heads, num_kv_heads=spec.num_kv_heads,
        head_dim=spec.hidden_size // spec.num_heads, qkv_bias=not llama,
        tie_word_embeddings=not llama,
    )  # fmt: skip


def shard_bytes(tree) -> int:
    """Bytes one device holds of a pytree of sharded ShapeDtypeStructs (its largest shard)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
        total += math.prod(shape) * jnp.dtype(leaf.dtype).itemsize
    return total


def _with_shardings(shapes, shardings):
    return jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )


def abstract_state(workload: Workload, run: RunConfig, mesh):
    """(graphdef, TrainState of sharded ShapeDtypeStructs, its shardings, optimizer): the
    trainer's `init_train_state`, traced, never run."""
    model = abstract_model(workload.model, jnp.dtype(workload.dtype))
    graphdef, params = nnx.split(model)
    shardings = param_shardings(model, mesh)
    params = _with_shardings(params, shardings)
    optimizer = make_optimizer(
        run.optim, total_steps=run.train.steps, updates_per_step=run.train.num_iterations
    )
    captured = {}

    def init(p):
        state, captured["shardings"] = init_train_state(
            optimizer, p, shardings, mesh, master_dtype=run.optim.master_dtype
        )
        return state

    shapes = jax.eval_shape(init, params)
    return (
        graphdef,
        _with_shardings(shapes, captured["shardings"]),
        captured["shardings"],
        optimizer,
    )


def compile_update(workload: Workload, run: RunConfig, mesh, graphdef, state, state_shardings,
                   optimizer) -> ProgramCost:  # fmt: skip
    """The jitted update of the trainer (`StepCache`) for R rows of P + C slots, compiled."""
    steps = StepCache(
        graphdef, state_shardings, mesh, prompt_slots=workload.prompt_slots,
        with_ref=run.loss.beta > 0, optimizer=optimizer, loss_config=run.loss,
        mode=run.train.mode, micro_batches=workload.micro_batches,
        compute_dtype=jnp.dtype(workload.dtype), compute=run.compute,
    )  # fmt: skip
    batch_shardings, update = steps(workload.rows, workload.completion_slots)
    return compile_program("update", update, state, abstract_batch(workload, batch_shardings))


def layer_extrapolated_cost(workload: Workload, run: RunConfig, mesh) -> tuple[float, float]:
    """(FLOPs, bytes accessed) per micro-batch of the update of `workload`'s depth, from its
    1- and 2-layer versions compiled with the layers unrolled (module docstring)."""
    unrolled = dataclasses.replace(run, compute=dataclasses.replace(run.compute, scan_layers=False))
    costs = []
    for layers in (1, 2):
        shallow = dataclasses.replace(
            workload, model=dataclasses.replace(workload.model, num_layers=layers)
        )
        graphdef, state, shardings, optimizer = abstract_state(shallow, unrolled, mesh)
        cost = compile_update(shallow, unrolled, mesh, graphdef, state, shardings, optimizer)
        costs.append((cost.flops, cost.bytes_accessed))
    (f1, b1), (f2, b2) = costs
    extra = workload.model.num_layers - 1
    return f1 + extra * (f2 - f1), b1 + extra * (b2 - b1)


def abstract_batch(workload: Workload, shardings: Batch) -> Batch:
    """The update's Batch as sharded ShapeDtypeStructs: R rows of T = P + C slots."""
    r, c = workload.rows, workload.completion_slots
    t = workload.prompt_slots + c
    shapes = {
        "tokens": ((r, t), jnp.int32),
        "valid": ((r, t), jnp.bool_),
        "weights": ((r, c), jnp.float32),
        "advantages": ((r, c), jnp.float32),
        "old_logprobs": ((r, c), jnp.float32),
        "ref_logprobs": ((r, c), jnp.float32),
    }
    return Batch(**{
        name: None if sharding is None else jax.ShapeDtypeStruct(*shapes[name], sharding=sharding)
        for name, sharding in shardings._asdict().items()
    })  # fmt: skip


def _cache_shapes(workload: Workload, rows: int, slots: int, mesh, dtype):
    """The sampler's KV cache (per layer k [R, K, H, S], v [R, K, S, H]) as sharded structs."""
    cfg = workload.model
    spec_shape = (rows, cfg.num_kv_heads, slots, cfg.head_dim)
    sharding = named_sharding(mesh, ("batch", "kv_heads", None, None), spec_shape)
    k = jax.ShapeDtypeStruct(
        (rows, cfg.num_kv_heads, cfg.head_dim, slots), dtype, sharding=sharding
    )
    v = jax.ShapeDtypeStruct(spec_shape, dtype, sharding=sharding)
    return tuple(LayerCache(k, v) for _ in range(cfg.num_layers))


def sampler_params(workload: Workload, state):
    """The parameters the trainer hands the sampler beside the state: `compute_copy` of the
    master copy in the model's dtype, or None when that is the master copy itself (the sampler
    then reads the state's)."""
    cast = functools.partial(compute_copy, dtype=jnp.dtype(workload.dtype))
    copy = jax.eval_shape(cast, state.params)
    same = zip(jax.tree.leaves(copy), jax.tree.leaves(state.params), strict=True)
    if all(a.dtype == b.dtype for a, b in same):
        return None
    return _with_shardings(copy, jax.tree.map(lambda x: x.sharding, state.params))


def compile_rollout(workload: Workload, mesh, graphdef, state) -> tuple[ProgramCost, ...]:
    """Prefill, cache growth and one full-cache decode step of the sampler, compiled. Each
    takes the TrainState (it stays in HBM while the sampler runs) and the sampler's parameters
    (`sampler_params`) as arguments."""
    b, g, p, c = (workload.prompts, workload.group_size, workload.prompt_slots,
                  workload.completion_slots)  # fmt: skip
    r, dtype = b * g, jnp.dtype(workload.dtype)
    ends = segment_ends(c, workload.decode_segments)
    prompt = named_sharding(mesh, ("batch", None), (b, p))
    rows = named_sharding(mesh, ("batch",), (r,))
    scalar = named_sharding(mesh, (), ())

    policy = sampler_params(workload, state)

    def model_of(state, policy):
        return nnx.merge(graphdef, state.params if policy is None else policy)

    def prefill_rows(state, policy, tokens, valid):
        model = model_of(state, policy)
        logits, cache = prefill(model, tokens, valid, p + ends[0], dtype)
        return jnp.repeat(logits, g, axis=0), jax.tree.map(lambda x: jnp.repeat(x, g, 0), cache)

    def decode(state, policy, cache, token, step, prompt_lengths):
        model = model_of(state, policy)
        return decode_step(model, cache, token, step, prompt_lengths, p)

    grow = lambda state, policy, cache: grow_cache(cache, p + c)  # noqa: E731
    full = _cache_shapes(workload, r, p + c, mesh, dtype)
    before_last = _cache_shapes(workload, r, p + ends[max(len(ends) - 2, 0)], mesh, dtype)
    sds = jax.ShapeDtypeStruct
    # keep_unused: the state is an argument of every program (it stays in HBM while sampling)
    # even where only the parameters are read; jit would otherwise drop the optimizer state.
    jit = functools.partial(jax.jit, keep_unused=True)
    programs = [
        compile_program("rollout prefill", jit(prefill_rows), state, policy,
                        sds((b, p), jnp.int32, sharding=prompt),
                        sds((b, p), jnp.bool_, sharding=prompt)),
        compile_program("rollout decode step", jit(decode, donate_argnums=(2,)), state,
                        policy, full, sds((r,), jnp.int32, sharding=rows),
                        sds((), jnp.int32, sharding=scalar), sds((r,), jnp.int32, sharding=rows)),
    ]  # fmt: skip
    if len(ends) > 1:
        growth = compile_program("rollout cache growth", jit(grow), state, policy, before_last)
        programs.insert(1, growth)
    return tuple(programs)


PARTS = ("update", "rollout")


def plan_run(workload: Workload, run: RunConfig, devices, parts: tuple[str, ...] = PARTS) -> Plan:
    """Compiles the update and the rollout (or only the `parts` named) of `workload` for
    `devices` and sums them up.

    A program the compiler refuses for size is left out and `refused` holds why (the rollout is
    compiled even when the update is refused)."""
    mesh = make_mesh(workload.mesh_shape, devices)
    chip = chip_of(devices[0])
    graphdef, state, state_shardings, optimizer = abstract_state(workload, run, mesh)
    programs: list[ProgramCost] = []
    refused: list[str] = []

    def update():
        cost = compile_update(workload, run, mesh, graphdef, state, state_shardings, optimizer)
        if run.compute.scan_layers:
            flops, bytes_accessed = layer_extrapolated_cost(workload, run, mesh)
            cost = dataclasses.replace(cost, flops=flops, bytes_accessed=bytes_accessed)
        return [cost]

    compilers = {
        "update": update,
        "rollout": lambda: compile_rollout(workload, mesh, graphdef, state),
    }
    for compile_some in (compilers[part] for part in parts):
        try:
            programs.extend(compile_some())
        except OutOfMemory as e:  # the other programs still say how far off the plan is
            refused.append(str(e))
    return Plan(
        chip=chip,
        devices=len(devices),
        mesh=dict(mesh.shape),
        micro_batches=workload.micro_batches,
        completion_slots=workload.completion_slots,
        param_bytes=shard_bytes(state.params),
        optimizer_bytes=shard_bytes(state.opt_state),
        programs=tuple(programs),
        refused="; ".join(refused) or None,
    )


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:.1f} MiB"


def _seconds(t: float) -> str:
    return f"{t:.1f} s" if t >= 1 else f"{1e3 * t:.2f} ms"


def format_plan(plan: Plan) -> str:
    """The plan as the lines `corea-jax plan` prints (per device)."""
    chip = plan.chip
    mesh = " ".join(f"{k}={v}" for k, v in plan.mesh.items())
    lines = [
        f"devices: {plan.devices} x {chip.name} ({_gib(chip.hbm_bytes)} HBM, "
        f"{chip.peak_flops / 1e12:.0f} TFLOP/s bf16, {chip.hbm_bandwidth / 1e9:.0f} GB/s); "
        f"mesh {mesh}",
        "per device:",
        f"  parameters + optimizer  {_gib(plan.param_bytes)} + {_gib(plan.optimizer_bytes)}",
    ]
    for p in plan.programs:
        lines.append(
            f"  {p.name:<22}  total {_gib(p.total_bytes)} (arguments {_gib(p.argument_bytes)}, "
            f"temporaries {_gib(p.temp_bytes)}, new outputs "
            f"{_gib(p.output_bytes - p.alias_bytes)}); compiled in {p.compile_seconds:.1f} s"
        )
    if plan.refused:
        lines.append(f"  refused                 {plan.refused}")
        return "\n".join(lines)
    update, rollout = plan.update_seconds(), plan.rollout_seconds()
    lines += [
        f"  peak                    {_gib(plan.peak_bytes)} of {_gib(chip.hbm_bytes)} "
        f"HBM, headroom {100 * plan.headroom:.1f}%",
        f"  FLOPs per step          update {plan.update_cost()[0]:.3g}, "
        f"rollout {plan.rollout_flops():.3g}",
        f"  roofline step time      {_seconds(update + rollout)} "
        f"(update {_seconds(update)}, rollout {_seconds(rollout)})",
    ]
    return "\n".join(lines)


def verdict(plan: Plan, min_headroom: float) -> str | None:
    """None when the plan fits with `min_headroom`; otherwise one line saying why not."""
    if plan.refused:
        state = _gib(plan.param_bytes + plan.optimizer_bytes)
        return f"does not fit: {plan.refused}; parameters + optimizer {state} per device"
    if plan.fits(min_headroom):
        return None
    worst = max(plan.programs, key=lambda p: p.total_bytes)
    return (
        f"does not fit: {worst.name} needs {_gib(worst.total_bytes)} per device (parameters + "
        f"optimizer {_gib(plan.param_bytes + plan.optimizer_bytes)}, temporaries "
        f"{_gib(worst.temp_bytes)}) against {_gib(plan.chip.hbm_bytes)} of {plan.chip.name} "
        f"HBM with {100 * min_headroom:.0f}% headroom required"
    )


def model_flops_per_device(workload: Workload, devices: int) -> float:
    """6 x parameters x tokens of the update (no attention term), for a sanity check."""
    tokens = workload.rows * (workload.prompt_slots + workload.completion_slots)
    return 6.0 * workload.model.num_params() * tokens / devices

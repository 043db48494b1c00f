"""`corea-jax plan`: will a training config fit on a TPU slice (or this host's GPUs)?

    corea-jax plan --config=configs/rlcc_qwen7b.py:corea --topology=v5p:2x2x4

Compiles, ahead of time and on this machine, the trainer's real update (every micro-batch, the
optimizer, the TrainState as the trainer builds it) and its rollout (prefill, KV-cache growth,
one decode step with the full cache for B x G rows of P + C slots) for the named topology,
without any TPU and without loading weights, then prints per device: parameter and optimizer
bytes, each program's total and temporaries, the peak against the chip's HBM and its headroom,
FLOPs per step and a roofline step time (corea_jax/parallel/plan.py says what they count).

TOPOLOGY: GEN:AxB[xC] with GEN v4, v5e, v5p or v6e (e.g. v5e:2x2, v6e:4x4, v5p:2x2x4; libtpu
describes the slice: pip install 'corea-jax[tpu]'), or `local` for this host's devices.
The mesh is the config's `mesh.shape` over those devices. P is the bucket of --prompt-tokens
(the trainer's P is the bucket of the longest training prompt); C the bucket of
`rollout.max_new_tokens`.

Exit status 0 when the peak leaves at least --min-headroom of HBM free; otherwise 2, with one
line on stderr saying which program needs how much.
"""

from __future__ import annotations

import os

from corea_jax.errors import CoreaError

TAKES_CONFIG = True


def add_arguments(parser):
    parser.add_argument("--topology", required=True, help="GEN:AxB[xC] (e.g. v5p:2x2x4) or local")
    parser.add_argument(
        "--prompt-tokens",
        type=int,
        default=256,
        help="longest prompt, in tokens (bucketed like the sampler's); default 256",
    )
    parser.add_argument(
        "--min-headroom",
        type=float,
        default=0.10,
        help="share of HBM the peak must leave free to fit; default 0.10",
    )


def workload_from_config(config, prompt_tokens: int):
    """The config's step shapes (B, G, P, C, micro-batches, mesh) and model architecture."""
    from corea_jax.models import ModelConfig, preset
    from corea_jax.models.scratch import ScratchModel
    from corea_jax.parallel.plan import Workload, scratch_model_config
    from corea_jax.rl.config import RunConfig
    from corea_jax.sampling import bucket

    run = RunConfig.from_config(config)
    if config.model.scratch.enabled:
        model = scratch_model_config(ScratchModel(**config.model.scratch.spec.to_dict()))
    elif config.model.path:
        model = ModelConfig.from_hf_config(config.model.path)
    elif config.model.get("hf_id"):
        model = preset(config.model.hf_id)
    else:
        raise CoreaError("plan: set model.hf_id (a preset) or model.path (a HF directory)")
    workload = Workload(
        model=model,
        dtype=config.model.dtype,
        prompts=run.train.prompts_per_step,
        group_size=run.rollout.group_size,
        prompt_slots=bucket(prompt_tokens),
        completion_slots=bucket(run.rollout.max_new_tokens),
        micro_batches=run.train.micro_batches,
        mesh_shape=tuple(config.mesh.shape),
    )
    return workload, run


def run(args) -> int:
    if args.config is None:
        raise CoreaError("plan needs --config=configs/FILE.py")
    if args.topology != "local" and not os.environ.get("JAX_PLATFORMS"):
        # Nothing runs on the host's own devices: do not probe for a TPU there (libtpu would,
        # slowly and loudly, on a machine without one); it only describes the target slice.
        import jax

        jax.config.update("jax_platforms", "cpu")
    from corea_jax.parallel.aot import topology_devices
    from corea_jax.parallel.plan import format_plan, plan_run, verdict

    workload, run_config = workload_from_config(args.config, args.prompt_tokens)
    devices = topology_devices(args.topology)
    w = workload
    print(
        f"plan: {w.model.num_params() / 1e6:,.1f} M parameters ({w.dtype}); B={w.prompts} prompts "
        f"x G={w.group_size} = {w.rows} rows of P={w.prompt_slots} + C={w.completion_slots} "
        f"slots, {w.micro_batches} micro-batches; topology {args.topology}"
    )
    plan = plan_run(workload, run_config, devices)
    print(format_plan(plan))
    reason = verdict(plan, args.min_headroom)
    if reason is not None:
        raise CoreaError(f"{args.topology}: {reason}")
    print(f"fits on {args.topology} with {100 * plan.headroom:.1f}% HBM headroom")
    return 0

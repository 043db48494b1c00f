"""Time and MFU of the GRPO update (forward + backward + AdamW) on one accelerator.

    python benchmarks/update_mfu.py [--preset Qwen/Qwen2.5-1.5B-Instruct] [--rows 64]
        [--prompt 256] [--completion 768] [--micro 4] [--dtype bfloat16] [--repeats 5]
        [--remat none] [--attention auto] [--logprob-chunk 0]

A random model of the preset's shape, a synthetic rollout batch (rows x (prompt + completion)
tokens, every completion full length), the real jitted `train_step` on a 1-device mesh
(float32 master weights, the step computing in --dtype; --remat, --attention and
--logprob-chunk are `config.compute`). MFU is 6 x parameters x tokens / step time / the chip's
peak (corea_jax.rl.metric_writers.PEAK_FLOPS); on a CPU the peak is unknown and only the step
time and tokens/s are printed.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from corea_jax.models import CausalLM, param_shardings, preset
from corea_jax.parallel.sharding import make_mesh
from corea_jax.rl import grpo
from corea_jax.rl.metric_writers import peak_flops_per_chip, train_flops
from corea_jax.rl.train_step import (
    OptimConfig,
    UpdateComputeConfig,
    init_train_state,
    jit_train_step,
    make_batch,
    make_optimizer,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="Qwen/Qwen2.5-1.5B-Instruct")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--completion", type=int, default=768)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--remat", default="none")  # config.compute (rl.train_step)
    parser.add_argument("--attention", default="auto")
    parser.add_argument("--logprob-chunk", type=int, default=0)
    args = parser.parse_args()

    cfg = preset(args.preset)
    mesh = make_mesh((1, -1, 1))
    model = CausalLM(cfg, dtype=jnp.dtype(args.dtype), rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    shardings = param_shardings(model, mesh)
    params = jax.device_put(params, shardings)
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-6, warmup_steps=0))
    # The trainer's state: float32 master weights and moments, the step computing in --dtype.
    state, state_shardings = init_train_state(
        optimizer, params, shardings, mesh, master_dtype="float32"
    )
    compute = UpdateComputeConfig(args.remat, args.attention, args.logprob_chunk)
    loss = grpo.LossConfig()

    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, cfg.vocab_size, args.prompt).tolist() for _ in range(args.rows)]
    completions = rng.integers(0, cfg.vocab_size, (args.rows, args.completion))
    batch = make_batch(
        prompts, np.arange(args.rows), completions, np.full(args.rows, args.completion),
        prompt_slots=args.prompt, loss_config=loss, advantages=rng.normal(size=args.rows),
        old_logprobs=np.full((args.rows, args.completion), -3.0),
    )  # fmt: skip
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    batch_sharding = jax.tree.map(lambda _: replicated, batch)
    step = jit_train_step(
        graphdef, state_shardings, batch_sharding, mesh, optimizer=optimizer, loss_config=loss,
        micro_batches=args.micro, compute_dtype=jnp.dtype(args.dtype), compute=compute,
    )  # fmt: skip
    batch = jax.device_put(batch, batch_sharding)

    t0 = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    tokens = args.rows * (args.prompt + args.completion)
    flops = train_flops(cfg.num_params(), tokens)
    peak = peak_flops_per_chip()
    print(
        f"GRPO update: {args.preset} shape ({cfg.num_params() / 1e9:.2f}B params, {args.dtype}), "
        f"{args.rows} rows x {args.prompt}+{args.completion} tokens, {args.micro} micro-batches, "
        f"{compute}, device {jax.devices()[0].device_kind}"
    )
    loss_value = float(metrics["loss"])
    print(
        f"  compile+first step {compile_s:.1f} s; step {step_s * 1e3:.1f} ms (median of "
        f"{args.repeats}); {tokens / step_s:,.0f} tokens/s; loss {loss_value:.4f}"
    )
    if peak:
        print(f"  MFU {flops / step_s / peak:.1%} of {peak / 1e12:.0f} TFLOP/s (6 x N x tokens)")
    else:
        print("  MFU: no peak FLOP/s known for this device")


if __name__ == "__main__":
    main()

"""Forward-pass throughput: corea-jax vs transformers (PyTorch) on the same random weights.

    .venv-py3.11/bin/python benchmarks/forward.py [--preset Qwen/Qwen2.5-0.5B-Instruct]
        [--layers L] [--batch 4] [--seq 256] [--repeats 5] [--dtype float32]

Builds a random model with the preset's shape (optionally fewer layers), writes it as a HF
directory, loads that same directory into both frameworks, and prints tokens/s for each, measured
in the same run on the same inputs. Needs PyTorch (the `bench` extra, Python 3.11).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from corea_jax.models import (
    CausalLM,
    causal_mask,
    load_model,
    positions_from_mask,
    preset,
    save_model,
)


def _time(fn, repeats):
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="Qwen/Qwen2.5-0.5B-Instruct")
    parser.add_argument("--layers", type=int, default=None, help="override the layer count")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()

    import torch
    import transformers

    cfg = preset(args.preset)
    if args.layers:
        cfg = dataclasses.replace(cfg, num_layers=args.layers)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (args.batch, args.seq))
    n_tokens = args.batch * args.seq

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        save_model(CausalLM(cfg, rngs=nnx.Rngs(0)), model_dir)
        dtype = jnp.dtype(args.dtype)
        model = load_model(model_dir, dtype=dtype)
        graphdef, state = nnx.split(model)

        @jax.jit
        def forward(state, tokens):
            valid = jnp.ones(tokens.shape, bool)
            m = nnx.merge(graphdef, state)
            return m(tokens, positions_from_mask(valid), causal_mask(valid))[0]

        jax_tokens = jnp.asarray(tokens, jnp.int32)
        jax_s = _time(lambda: forward(state, jax_tokens).block_until_ready(), args.repeats)

        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch_dtype, attn_implementation="sdpa"
        ).eval()
        torch_tokens = torch.tensor(tokens, dtype=torch.long)

        def torch_forward():
            with torch.inference_mode():
                hf(input_ids=torch_tokens).logits.float()

        torch_s = _time(torch_forward, args.repeats)

    print(
        f"forward, {args.preset} shape ({cfg.num_layers} layers, {cfg.num_params() / 1e6:.0f}M "
        f"params), batch {args.batch} x {args.seq} tokens, {args.dtype}, "
        f"{jax.devices()[0].platform}, torch threads {torch.get_num_threads()}"
    )
    print(f"  corea-jax     {n_tokens / jax_s:10.1f} tokens/s  ({jax_s * 1e3:.1f} ms)")
    print(f"  transformers  {n_tokens / torch_s:10.1f} tokens/s  ({torch_s * 1e3:.1f} ms)")
    print(f"  speed-up      {torch_s / jax_s:10.2f}x")


if __name__ == "__main__":
    main()

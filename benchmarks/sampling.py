"""Greedy sampling throughput: corea-jax's KV-cache sampler vs transformers `generate`.

    .venv-py3.11/bin/python benchmarks/sampling.py [--batches 1,16,64] [--prompt-len 64]
        [--new-tokens 128] [--dtype float32] [--skip-torch] [--preset HF_ID]

Same random weights in both (a Qwen2 config of ~40M parameters: 8 layers, hidden 512, 8 heads /
2 KV heads, vocab 32000, unless --preset names a published shape), prompts of --prompt-len
tokens, --new-tokens new tokens (no EOS), greedy. Prints tokens/s for both, their ratio, and the
FLOP/s achieved by corea-jax as a fraction of this machine's peak matmul FLOP/s, measured in the
same run with a large jitted matmul. With --skip-torch only corea-jax is timed (e.g. on a GPU).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from corea_jax.models import CausalLM, ModelConfig, load_model, preset, save_model
from corea_jax.sampling import Sampler

BENCH_CONFIG = ModelConfig(
    family="qwen2", vocab_size=32_000, hidden_size=512, intermediate_size=1536, num_layers=8,
    num_heads=8, num_kv_heads=2, head_dim=64, rope_theta=1_000_000.0, qkv_bias=True,
    tie_word_embeddings=True, max_position_embeddings=4096, eos_token_id=None,
)  # fmt: skip


def peak_matmul_flops(dtype, size=2048, repeats=10) -> float:
    a = jnp.ones((size, size), dtype)
    b = jnp.ones((size, size), dtype)
    f = jax.jit(lambda a, b: a @ b)
    f(a, b).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = f(a, b)
    out.block_until_ready()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def generation_flops(cfg: ModelConfig, batch: int, prompt: int, new: int) -> float:
    """Matmul FLOPs a generation needs: a prefill of `prompt` tokens (the LM head on its last
    token only) plus `new` cached decode steps, attention over the filled context only."""
    d, f, h = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q, kv = cfg.num_heads * h, cfg.num_kv_heads * h
    layers = 2 * cfg.num_layers * (2 * d * q + 2 * d * kv + 3 * d * f)
    head = 2 * d * cfg.vocab_size
    attn = lambda ctx: 4 * cfg.num_layers * q * ctx  # noqa: E731  scores + weighted sum
    prefill = prompt * layers + head + sum(attn(t + 1) for t in range(prompt))
    decode = sum(layers + head + attn(prompt + t + 1) for t in range(new - 1))
    return batch * (prefill + decode)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--preset", default=None, help="use a published shape instead")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--peak-size", type=int, default=2048, help="matmul size for the peak")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    cfg = BENCH_CONFIG if args.preset is None else preset(args.preset)
    dtype = jnp.dtype(args.dtype)
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        if args.skip_torch:  # no second framework to share weights with: skip the round trip
            model = CausalLM(cfg, dtype=dtype, rngs=nnx.Rngs(0))
        else:
            save_model(CausalLM(cfg, rngs=nnx.Rngs(0)), model_dir)
            model = load_model(model_dir, dtype=dtype)
        sampler = Sampler(model, eos_ids=())
        peak = peak_matmul_flops(dtype, args.peak_size)
        print(
            f"sampling: {cfg.num_params() / 1e6:.1f}M params, prompt {args.prompt_len}, "
            f"{args.new_tokens} new tokens, greedy, {args.dtype}, device "
            f"{jax.devices()[0].device_kind}; peak matmul {peak / 1e9:.1f} GFLOP/s"
        )
        hf = None
        if not args.skip_torch:
            import torch
            import transformers

            torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
            hf = transformers.AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=torch_dtype, attn_implementation="sdpa"
            ).eval()
            print(
                f"transformers {transformers.__version__}, torch threads {torch.get_num_threads()}"
            )

        for batch in batches:
            prompts = rng.integers(3, cfg.vocab_size, (batch, args.prompt_len)).tolist()
            run = lambda p=prompts: sampler.generate(p, max_new_tokens=args.new_tokens)  # noqa: E731
            run()  # compile
            start = time.perf_counter()
            out = run()
            ours = time.perf_counter() - start
            assert int(out.lengths.min()) == args.new_tokens
            tokens = batch * args.new_tokens
            flops = generation_flops(cfg, batch, args.prompt_len, args.new_tokens) / ours
            line = (
                f"batch {batch:3d}: corea-jax {tokens / ours:9.1f} tok/s "
                f"({flops / 1e9:.1f} GFLOP/s = {flops / peak:.0%} of peak)"
            )
            if hf is not None:
                ids = torch.tensor(prompts)

                def torch_run(ids=ids):
                    with torch.inference_mode():
                        return hf.generate(
                            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                            max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                            eos_token_id=None, pad_token_id=0,
                        )  # fmt: skip

                torch_run()
                start = time.perf_counter()
                torch_run()
                theirs = time.perf_counter() - start
                line += f" | transformers {tokens / theirs:9.1f} tok/s | ratio {theirs / ours:.2f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()

"""How fast could greedy generation be on this machine? The matmul floor of `sampling.py`.

    .venv-py3.11/bin/python benchmarks/gemm_floor.py [--batches 16,64] [--skip-torch]

A generation of `sampling.py` (the same ~40M Qwen2 shape, prompts of 64 tokens, 128 new tokens,
float32) is timed end to end with corea-jax's Sampler and with transformers `generate`, and next
to that the *matrix products alone* that it has to do: the prefill's projections and MLP for
every prompt token, then 127 decode steps of every projection, MLP and LM-head product at
M = batch rows, each with its own weights, chained as in the model. No attention, no KV cache,
no sampling, no norms: what remains is a lower bound on any generation built on the same
matmul library (XLA's CPU dots for JAX, torch's for transformers).

Printed per batch: both end-to-end times, both matmul floors, and the time the issue's target
(1.5x transformers) asks for, so whether that target is reachable with XLA's CPU matmuls can be
read off one run. Also printed: the rate at which the XLA floor streams the weights through its
decode matmuls, next to the rate a plain jitted sum reads a 400 MB array on the same machine.
(The LM-head logits are summed per step so that XLA cannot drop the unused
columns; that reduction, about 1% of a step, is counted in the floor.)
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from sampling import BENCH_CONFIG

from corea_jax.models import CausalLM
from corea_jax.sampling import Sampler

PROMPT, NEW = 64, 128


def _weights(cfg, rng):
    """Per layer (q, k, v, o, gate, up, down) kernels [in, out] and the LM head [V, D]."""
    d, f = cfg.hidden_size, cfg.intermediate_size
    nh, kh = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim  # N*H, K*H
    shapes = [(d, nh), (d, kh), (d, kh), (nh, d), (d, f), (d, f), (f, d)]
    layers = [
        [(rng.standard_normal(s, dtype=np.float32) * 0.02) for s in shapes]
        for _ in range(cfg.num_layers)
    ]
    head = rng.standard_normal((cfg.vocab_size, d), dtype=np.float32) * 0.02
    return layers, head


def _chain(x, layers, mm, silu):
    """The model's matmuls on x [rows, D] (B x P in the prefill, B per decode step), in its
    dependency order; returns [rows, D]."""
    for wq, wk, wv, wo, wg, wu, wd in layers:
        query, key, value = mm(x, wq), mm(x, wk), mm(x, wv)
        x = x + mm(query, wo) + 1e-9 * (key.sum(-1, keepdims=True) + value.sum(-1, keepdims=True))
        x = x + mm(silu(mm(x, wg)) * mm(x, wu), wd)
    return x


def read_bandwidth(n_bytes: int = 400_000_000) -> float:
    """Bytes/s a jitted sum reads from a float32 array of n_bytes (best of 3)."""
    x = jnp.ones((n_bytes // 4,), jnp.float32)
    total = jax.jit(jnp.sum)
    total(x).block_until_ready()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total(x).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return n_bytes / best


def jax_floor(layers, head, batch) -> float:
    layers = [[jnp.asarray(w) for w in ws] for ws in layers]
    head = jnp.asarray(head)
    mm = jnp.matmul

    @jax.jit
    def run(layers, head, prompt_x, x):
        chained = _chain(prompt_x, layers, mm, jax.nn.silu)
        x = x + 1e-9 * chained.reshape(batch, PROMPT, -1)[:, -1]

        def step(_, x):
            x = _chain(x, layers, mm, jax.nn.silu)
            logits = jnp.einsum("bd,vd->bv", x, head)
            return x + 1e-9 * logits.sum(-1, keepdims=True)

        return jax.lax.fori_loop(0, NEW - 1, step, x)

    d = head.shape[1]
    prompt_x = jnp.ones((batch * PROMPT, d), jnp.float32) * 0.01
    x = jnp.ones((batch, d), jnp.float32) * 0.01
    run(layers, head, prompt_x, x).block_until_ready()
    start = time.perf_counter()
    run(layers, head, prompt_x, x).block_until_ready()
    return time.perf_counter() - start


def torch_floor(layers, head, batch) -> float:
    import torch

    layers = [[torch.from_numpy(w) for w in ws] for ws in layers]
    head = torch.from_numpy(head)
    d = head.shape[1]

    def run():
        with torch.inference_mode():
            prompt_x = torch.full((batch * PROMPT, d), 0.01)
            chained = _chain(prompt_x, layers, torch.matmul, torch.nn.functional.silu)
            x = torch.full((batch, d), 0.01) + 1e-9 * chained.reshape(batch, PROMPT, -1)[:, -1]
            for _ in range(NEW - 1):
                x = _chain(x, layers, torch.matmul, torch.nn.functional.silu)
                x = x + 1e-9 * (x @ head.T).sum(-1, keepdim=True)
            return x

    run()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="16,64")
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args()
    cfg = BENCH_CONFIG
    rng = np.random.default_rng(0)
    layers, head = _weights(cfg, rng)
    sampler = Sampler(CausalLM(cfg, rngs=nnx.Rngs(0)), eos_ids=())
    hf = None
    if not args.skip_torch:
        import torch
        import transformers

        hf_cfg = transformers.Qwen2Config(
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
            tie_word_embeddings=True, max_position_embeddings=cfg.max_position_embeddings,
        )  # fmt: skip
        hf = transformers.Qwen2ForCausalLM(hf_cfg).eval()
        print(f"transformers {transformers.__version__}, torch threads {torch.get_num_threads()}")
    weight_bytes = 4 * (sum(w.size for ws in layers for w in ws) + head.size)
    print(
        f"prompt {PROMPT}, {NEW} new tokens, float32; times in seconds; a jitted sum reads "
        f"{read_bandwidth() / 1e9:.1f} GB/s"
    )
    for batch in [int(b) for b in args.batches.split(",")]:
        prompts = rng.integers(3, cfg.vocab_size, (batch, PROMPT)).tolist()
        sampler.generate(prompts, max_new_tokens=NEW)
        start = time.perf_counter()
        sampler.generate(prompts, max_new_tokens=NEW)
        ours = time.perf_counter() - start
        floor = jax_floor(layers, head, batch)
        streamed = weight_bytes * (NEW - 1) / floor  # a lower bound: the prefill is in `floor`
        line = (
            f"batch {batch:3d}: corea-jax generate {ours:.2f} | XLA matmul floor {floor:.2f} "
            f"(weights streamed at >= {streamed / 1e9:.1f} GB/s)"
        )
        if hf is not None:
            import torch

            ids = torch.tensor(prompts)
            kwargs = dict(
                input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                max_new_tokens=NEW, min_new_tokens=NEW, eos_token_id=None, pad_token_id=0,
            )  # fmt: skip
            with torch.inference_mode():
                hf.generate(**kwargs)
                start = time.perf_counter()
                hf.generate(**kwargs)
                theirs = time.perf_counter() - start
            line += (
                f" | transformers generate {theirs:.2f} | torch matmul floor "
                f"{torch_floor(layers, head, batch):.2f} | 1.5x needs <= {theirs / 1.5:.2f}"
            )
        print(line, flush=True)


if __name__ == "__main__":
    main()

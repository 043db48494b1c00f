"""Fused causal attention for the update's forward: no [T, S] score tensor in memory.

The decoder's own attention (`transformer.Attention`, the "xla" path) materialises float32
scores [B, N, T, S]; at 4k tokens that is about 1.9 GB per row per layer for Qwen2.5-7B. The
kernels here take the queries, keys and values of a whole sequence (no KV cache) and the row's
`valid` mask [B, T], and compute exactly what `causal_mask(valid)` asks for: a real query at
slot i attends to the real keys at slots j <= i. Padding may sit anywhere (the update's rows are
a left-padded prompt followed by a right-padded completion); padding queries get some finite
output that no real token ever reads, so padding changes no logit.

    dot_product_attention  `jax.nn.dot_product_attention` (cuDNN flash attention on GPU, its
                           XLA reference elsewhere). cuDNN masks by sequence lengths only, so
                           each row's real tokens are first moved to the front in order (a
                           stable sort of slots by padding, undone on the output): then
                           "causal, keys < length" is exactly `causal_mask(valid)`.
    splash                 The Pallas TPU splash-attention kernel, run per device inside
                           `jax.shard_map` (rows over the mesh's batch axes, heads over
                           "tensor" where it divides K). Padding is a segment id: real tokens
                           are segment 1, padding 0, and a query sees only its own segment.

Both take grouped-query attention natively (K kv heads, query head n reads kv head n // Q, as
in HF and `transformer.Attention`); K/V are never repeated. Shapes: query [B, T, N, H], key and
value [B, T, K, H], valid [B, T] bool -> [B, T, N, H] in the query's dtype.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks
from jax.sharding import Mesh, PartitionSpec

from corea_jax.parallel.sharding import DEFAULT_RULES, logical_to_spec

SPLASH_LANES = 128  # splash needs the sequence in whole blocks of 128 slots


def dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    valid: jax.Array,
    implementation: str | None = None,
) -> jax.Array:
    """`jax.nn.dot_product_attention` under `causal_mask(valid)` (see the module docstring).

    `implementation` is "cudnn" (GPU flash attention), "xla" (the reference, [T, S] scores)
    or None (JAX picks).
    """
    # Stable: real tokens keep their order, so causality among them is unchanged.
    order = jnp.argsort(~valid, axis=1, stable=True)  # [B, T]: real slots first
    restore = jnp.argsort(order, axis=1)
    gather = lambda x, index: jnp.take_along_axis(x, index[:, :, None, None], axis=1)  # noqa: E731
    lengths = jnp.sum(valid, axis=1, dtype=jnp.int32)  # [B]
    out = jax.nn.dot_product_attention(
        gather(query, order),
        gather(key, order),
        gather(value, order),
        is_causal=True,
        key_value_seq_lengths=lengths,
        implementation=implementation,
    )
    return gather(out, restore)


def splash_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    valid: jax.Array,
    mesh: Mesh | None,
    *,
    rules=DEFAULT_RULES,
    interpret: bool = False,
) -> jax.Array:
    """The Pallas splash-attention kernel under `causal_mask(valid)`, sharded over `mesh`.

    The sequence is padded up to whole 128-slot blocks (padding segment 0, cut off again).
    `mesh=None` runs the kernel on one device without `shard_map`. `interpret=True` runs the
    Pallas kernel in interpret mode (any backend, slow: the CPU parity test).
    """
    b, t, n, h = query.shape
    k = key.shape[2]
    pad = -t % SPLASH_LANES
    if pad:
        widen = lambda x: jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0)))  # noqa: E731
        query, key, value = widen(query), widen(key), widen(value)
        valid = jnp.pad(valid, ((0, 0), (0, pad)))
    segments = valid.astype(jnp.int32)
    # splash does not scale the logits; HF scales them (in float32, after the product).
    query = query * jnp.asarray(h**-0.5, query.dtype)
    # Heads first, per the kernel: q [B, N, T, H], k and v [B, K, T, H].
    q, kk, vv = (x.transpose(0, 2, 1, 3) for x in (query, key, value))
    run = functools.partial(_splash_per_device, interpret=interpret)
    if mesh is not None:
        # One spec for q and k/v heads: shard heads only where K divides (then N does too).
        batch = logical_to_spec(("batch",), rules, mesh, (b,))[0]
        heads = logical_to_spec(("kv_heads",), rules, mesh, (k,))[0]
        qkv_spec = PartitionSpec(batch, heads, None, None)
        run = jax.shard_map(
            run,
            mesh=mesh,
            in_specs=(qkv_spec, qkv_spec, qkv_spec, PartitionSpec(batch, None)),
            out_specs=qkv_spec,
            check_vma=False,
        )
    out = run(q, kk, vv, segments)  # [B, N, T, H]
    return out.transpose(0, 2, 1, 3)[:, :t]


def _splash_per_device(q, k, v, segments, *, interpret: bool):
    """Local blocks: q [B, N, T, H], k/v [B, K, T, H], segments [B, T] -> [B, N, T, H]."""
    n, t = q.shape[1], q.shape[2]
    block = next(size for size in (512, 256, 128) if t % size == 0)
    sizes = splash.BlockSizes(
        block_q=block,
        block_kv=block,
        block_kv_compute=block,
        block_q_dkv=block,
        block_kv_dkv=block,
        block_kv_dkv_compute=block,
        block_q_dq=block,
        block_kv_dq=block,
    )
    kernel = splash.make_splash_mha(
        masks.MultiHeadMask([masks.CausalMask((t, t))] * n),
        block_sizes=sizes,
        head_shards=1,
        q_seq_shards=1,
        interpret=interpret,
    )
    per_row = lambda q, k, v, s: kernel(q, k, v, segment_ids=splash.SegmentIds(s, s))  # noqa: E731
    return jax.vmap(per_row)(q, k, v, segments)

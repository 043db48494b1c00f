"""The one decoder shared by Qwen2.5 and Llama 3 (flax NNX).

Module and parameter names mirror the HF checkpoints (`model.embed_tokens`,
`model.layers.{i}.self_attn.q_proj`, `mlp.gate_proj`, `input_layernorm`, `lm_head`), so the
loader is a table of renames plus transposes.

Departures from a textbook decoder, each to match the HF reference bit-for-bit in float32:
RMSNorm normalises in float32 and casts back before the weight multiply; attention logits and
softmax are float32; the LM head returns float32 logits whatever the parameter dtype, since
sampling and GRPO log-probs need them.

Positions are per row (`positions [B, T]`) and the attention mask is explicit (`mask [B, T, S]`),
so left-padded batches and the sampler's KV cache use the same code path as training. A
full-sequence forward may instead pass the row's `valid` mask [B, T] (meaning
`causal_mask(valid)`) and a `ComputeConfig` (`corea_jax.models.compute`): per-layer remat and
fused attention kernels that never hold [T, S] scores, for the update's memory. The defaults
compute exactly what the [B, T, S] path computes, op for op.

Axis letters
------------
One alphabet for the models and the sampler, in shape comments, einsum strings and size
variables (lower case: `b, t, _ = x.shape`):

    B  batch: prompts (or any batch of sequences)
    G  samples per prompt (the GRPO group)
    R  rows = B x G completions, flattened (row r is sample r % G of prompt r // G)
    T  query positions of one forward pass
    S  key slots (the KV cache; S = T without one)
    P  prompt slots (bucketed, left-padded)
    C  completion slots (new tokens)
    D  model width              F  MLP width
    N  query heads              K  kv heads
    Q  = N / K query heads per kv head
    H  head dim                 V  vocab
    L  layers

An axis that merges two is written as their product (`[B, K, Q*T, H]`); an einsum, which needs
one letter per axis, names its merged letter where it is used.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from corea_jax.models.compute import AttentionFn, ComputeConfig
from corea_jax.models.config import ModelConfig
from corea_jax.models.rope import RopeTables, apply_rope, inverse_frequencies, rope_tables

_init = nnx.initializers.normal(stddev=0.02)


class LayerCache(NamedTuple):
    """One layer's KV cache: keys k [B, K, H, S] and values v [B, K, S, H], written at a shared
    slot index along S.

    Heads first, so the per-step score and weighted-sum contractions are batched matmuls over
    (B, K) with no transpose of the cache. Keys are stored head-dim-major so that both products
    read their cache operand in the plain [contracting, output] order: with keys as [S, H] XLA's
    CPU dot packs (transposes) every batch's key block on every decode step, which made the score
    product 3x slower than the weighted sum at batch 64.
    """

    k: jax.Array
    v: jax.Array


def causal_mask(valid: jax.Array) -> jax.Array:
    """[B, T] bool (False = padding) -> [B, T, T] bool: causal and not attending to padding."""
    t = valid.shape[1]
    return jnp.tril(jnp.ones((t, t), bool))[None] & valid[:, None, :]


def positions_from_mask(valid: jax.Array) -> jax.Array:
    """[B, T] bool -> [B, T] int32 positions counting real tokens only (left padding -> 0)."""
    return jnp.maximum(jnp.cumsum(valid.astype(jnp.int32), axis=1) - 1, 0)


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, dtype):
        self.weight = nnx.Param(jnp.ones((dim,), dtype))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.weight[...] * x32.astype(x.dtype)


def _linear(d_in, d_out, bias, dtype, rngs):
    return nnx.Linear(
        d_in,
        d_out,
        use_bias=bias,
        dtype=dtype,
        param_dtype=dtype,
        kernel_init=_init,
        bias_init=nnx.initializers.zeros,
        rngs=rngs,
    )


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, dtype, rngs: nnx.Rngs):
        d, h = cfg.hidden_size, cfg.head_dim
        self.q_proj = _linear(d, cfg.num_heads * h, cfg.qkv_bias, dtype, rngs)
        self.k_proj = _linear(d, cfg.num_kv_heads * h, cfg.qkv_bias, dtype, rngs)
        self.v_proj = _linear(d, cfg.num_kv_heads * h, cfg.qkv_bias, dtype, rngs)
        self.o_proj = _linear(cfg.num_heads * h, d, cfg.o_bias, dtype, rngs)
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, h

    def __call__(
        self,
        x,
        rope: RopeTables,
        mask,
        cache: LayerCache | None,
        cache_index,
        attend: AttentionFn | None = None,
    ):
        """x [B, T, D], rope tables [B, T, 1, H], mask [B, T, S] -> ([B, T, D], cache or None).

        Without a cache S = T. With one, the T new keys/values are written at slots
        [cache_index, cache_index + T) of the cache and the queries attend over all S slots
        that `mask` allows. With a fused kernel `attend` (no cache) `mask` is `valid` [B, T].
        """
        b, t, _ = x.shape
        n, k, h = self.num_heads, self.num_kv_heads, self.head_dim
        query = apply_rope(self.q_proj(x).reshape(b, t, n, h), rope)  # [B, T, N, H]
        key = apply_rope(self.k_proj(x).reshape(b, t, k, h), rope)
        if attend is not None:
            value = self.v_proj(x).reshape(b, t, k, h)
            return self.o_proj(attend(query, key, value, mask).reshape(b, t, n * h)), None
        key = key.transpose(0, 2, 3, 1)  # [B, K, H, T]: the cache's key layout
        value = self.v_proj(x).reshape(b, t, k, h).transpose(0, 2, 1, 3)  # [B, K, T, H]
        if cache is not None:
            key = jax.lax.dynamic_update_slice(
                cache.k, key.astype(cache.k.dtype), (0, 0, 0, cache_index)
            )
            value = jax.lax.dynamic_update_slice(
                cache.v, value.astype(cache.v.dtype), (0, 0, cache_index, 0)
            )
            cache = LayerCache(key, value)
        # The Q = N / K query heads of a KV head and the T positions share one axis (einsum
        # letter m = Q*T), so both products are plain batched matmuls over (B, K): K/V are never
        # repeated Q times (XLA on CPU materialised that repeat, [B, K, S, Q, H] per layer per
        # decode step).
        q = n // k
        query = query.reshape(b, t, k, q, h).transpose(0, 2, 3, 1, 4).reshape(b, k, q * t, h)
        scores = jnp.einsum("bkmh,bkhs->bkms", query, key, preferred_element_type=jnp.float32)
        scores = scores.reshape(b, k, q, t, -1) * (h**-0.5)  # [B, K, Q, T, S]
        scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(value.dtype).reshape(b, k, q * t, -1)
        out = jnp.einsum("bkms,bksh->bkmh", probs, value).reshape(b, k, q, t, h)
        out = out.transpose(0, 3, 1, 2, 4).reshape(b, t, n * h)  # heads in (K, Q) order
        return self.o_proj(out), cache


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, dtype, rngs: nnx.Rngs):
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = _linear(d, f, False, dtype, rngs)
        self.up_proj = _linear(d, f, False, dtype, rngs)
        self.down_proj = _linear(f, d, False, dtype, rngs)

    def __call__(self, x):
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: ModelConfig, dtype, rngs: nnx.Rngs):
        self.self_attn = Attention(cfg, dtype, rngs)
        self.mlp = MLP(cfg, dtype, rngs)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)

    def __call__(self, x, rope, mask, cache, cache_index, attend: AttentionFn | None = None):
        attn, cache = self.self_attn(
            self.input_layernorm(x), rope, mask, cache, cache_index, attend
        )
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x)), cache


class Decoder(nnx.Module):
    """HF's `model.*`: embeddings, the layer stack and the final norm."""

    def __init__(self, cfg: ModelConfig, dtype, rngs: nnx.Rngs):
        self.embed_tokens = nnx.Embed(
            cfg.vocab_size,
            cfg.hidden_size,
            dtype=dtype,
            param_dtype=dtype,
            embedding_init=_init,
            rngs=rngs,
        )
        self.layers = nnx.List([DecoderLayer(cfg, dtype, rngs) for _ in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)


class CausalLM(nnx.Module):
    """Decoder + LM head (tied to `embed_tokens` or a separate `lm_head`)."""

    def __init__(self, cfg: ModelConfig, *, dtype=jnp.float32, rngs: nnx.Rngs | None = None):
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        self.config = cfg
        self.model = Decoder(cfg, dtype, rngs)
        if not cfg.tie_word_embeddings:
            self.lm_head = _linear(cfg.hidden_size, cfg.vocab_size, False, dtype, rngs)

    def hidden_states(
        self,
        tokens: jax.Array,
        positions: jax.Array,
        mask: jax.Array,
        cache: tuple[LayerCache, ...] | None = None,
        cache_index: jax.Array | int = 0,
        *,
        compute: ComputeConfig | None = None,
    ) -> tuple[jax.Array, tuple[LayerCache, ...] | None]:
        """tokens, positions [B, T]; mask [B, T, S] -> final-norm hidden [B, T, D], cache.

        Without a cache `mask` may be the rows' `valid` [B, T] instead, meaning
        `causal_mask(valid)`; only then does `compute` choose the attention kernel (a [B, T, S]
        mask is general, so it always takes the XLA attention). `compute.remat` applies to
        every forward without a cache. None is `ComputeConfig()`: today's path.
        """
        compute = ComputeConfig() if compute is None else compute
        x = self.model.embed_tokens(tokens)
        cfg = self.config
        inv_freq = inverse_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
        rope = rope_tables(positions, inv_freq, x.dtype)
        if cache is not None:
            new_cache = []
            for i, layer in enumerate(self.model.layers):
                x, layer_cache = layer(x, rope, mask, cache[i], cache_index)
                new_cache.append(layer_cache)
            return self.model.norm(x), tuple(new_cache)
        attend = None
        if mask.ndim == 2:
            attend = compute.attention_fn()
            if attend is None:
                mask = causal_mask(mask)

        def apply(layer, x, rope, mask):
            return layer(x, rope, mask, None, 0, attend)[0]

        policy = compute.remat_policy()
        if compute.scan_layers:
            x = self._scan_layers(x, rope, mask, apply, policy, compute)
        else:
            if policy is not None:
                apply = nnx.remat(apply, policy=policy)
            for layer in self.model.layers:
                x = apply(layer, x, rope, mask)
        return self.model.norm(x), None

    def _scan_layers(self, x, rope, mask, apply, policy, compute: ComputeConfig):
        """The layer stack as one `lax.scan` over parameters stacked here, [L, ...] per leaf:
        XLA compiles one layer instead of L. The stored parameters keep their HF layout, so the
        update holds a stacked copy of the layer weights and of their gradients besides.

        With `compute.mesh`, each stacked leaf is constrained to its parameter's own sharding
        (FSDP / tensor) with the layer axis unsharded, so the copies stay sharded and each scan
        step gathers one layer's weights, not the compiler's choice of layout."""
        graphdef, _ = nnx.split(self.model.layers[0])
        states = [nnx.state(layer) for layer in self.model.layers]
        stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
        if compute.mesh is not None:
            stacked = _constrain_stacked(stacked, compute)

        def step(x, state):
            return apply(nnx.merge(graphdef, state), x, rope, mask), None

        if policy is not None:
            step = jax.checkpoint(step, policy=policy)
        return jax.lax.scan(step, x, stacked)[0]

    def logits(self, hidden: jax.Array) -> jax.Array:
        """hidden [..., D] -> float32 logits [..., V]."""
        if self.config.tie_word_embeddings:
            table = self.model.embed_tokens.embedding[...]
            return jnp.einsum("...d,vd->...v", hidden, table, preferred_element_type=jnp.float32)
        kernel = self.lm_head.kernel[...]
        return jnp.einsum("...d,dv->...v", hidden, kernel, preferred_element_type=jnp.float32)

    def __call__(self, tokens, positions, mask, cache=None, cache_index=0, *, compute=None):
        """tokens, positions [B, T]; mask [B, T, S] (or valid [B, T], see `hidden_states`) ->
        (float32 logits [B, T, V], cache)."""
        hidden, cache = self.hidden_states(
            tokens, positions, mask, cache, cache_index, compute=compute
        )
        return self.logits(hidden), cache


def _constrain_stacked(stacked, compute: ComputeConfig):
    """Stacked layer parameters [L, ...] -> the same, sharded like one layer's parameter."""
    from jax.sharding import NamedSharding, PartitionSpec

    from corea_jax.models.params import logical_axes
    from corea_jax.parallel.sharding import logical_to_spec

    def constrain(path, leaf):
        # The state's dict keys (module and leaf names); the Variable's own `.value` is not one.
        names = tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))
        spec = logical_to_spec(logical_axes(names), compute.rules, compute.mesh, leaf.shape[1:])
        sharding = NamedSharding(compute.mesh, PartitionSpec(None, *spec))
        return jax.lax.with_sharding_constraint(leaf, sharding)

    return jax.tree_util.tree_map_with_path(constrain, stacked)


def init_cache(
    cfg: ModelConfig, batch: int, length: int, dtype=jnp.float32
) -> tuple[LayerCache, ...]:
    """Zeroed KV cache: per layer k [B, K, H, S=length] and v [B, K, S, H]."""
    shape = (batch, cfg.num_kv_heads, length, cfg.head_dim)
    key_shape = (batch, cfg.num_kv_heads, cfg.head_dim, length)
    return tuple(
        LayerCache(jnp.zeros(key_shape, dtype), jnp.zeros(shape, dtype))
        for _ in range(cfg.num_layers)
    )

"""Rotary position embeddings, rotate-half convention (as in the HF Qwen2/Llama checkpoints).

The rotate-half layout pairs feature i with i + H/2 (not adjacent pairs as in the RoPE paper);
checkpoints trained that way need it, and q/k projections are loaded without any permutation.
Angles are computed in float32 from integer positions, so per-row positions (left padding, a KV
cache) give exactly the angles of an unpadded sequence.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from corea_jax.models.config import RopeScaling


class RopeTables(NamedTuple):
    cos: jnp.ndarray  # [B, T, 1, H]
    sin: jnp.ndarray  # [B, T, 1, H]


def inverse_frequencies(
    head_dim: int, theta: float, scaling: RopeScaling | None = None
) -> np.ndarray:
    """[H/2] float32 inverse frequencies, with Llama 3.1's piecewise rescaling if asked."""
    exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim
    inv_freq = (1.0 / (theta**exponents)).astype(np.float32)
    if scaling is None:
        return inv_freq
    if scaling.kind != "llama3":
        raise ValueError(f"unknown rope scaling kind {scaling.kind!r}")
    # Long wavelengths (beyond the original context) are slowed by `factor`, short ones kept,
    # and the band in between interpolated smoothly.
    old_len = scaling.original_max_position_embeddings
    low_wavelen = old_len / scaling.low_freq_factor
    high_wavelen = old_len / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (old_len / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def rope_tables(positions: jnp.ndarray, inv_freq: np.ndarray, dtype) -> RopeTables:
    """cos, sin [B, T, 1, H] in `dtype` for angles positions [B, T] x inv_freq [H/2].

    Built once per forward and shared by every layer: XLA does not merge the per-layer copies,
    and sin/cos of [B, T, H] cost about as much as a small matmul on CPU.
    """
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # [B, T, H/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]  # [B, T, 1, H]
    return RopeTables(jnp.cos(angles).astype(dtype), jnp.sin(angles).astype(dtype))


def apply_rope(x: jnp.ndarray, tables: RopeTables) -> jnp.ndarray:
    """Rotates x [B, T, N or K, H] by `rope_tables` [B, T, 1, H]; returns x's dtype."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * tables.cos.astype(x.dtype) + rotated * tables.sin.astype(x.dtype)

"""Sampling methods: frozen dataclasses that turn float32 logits into a sampling distribution.

Each method maps logits [B, V] to *processed* logits (temperature applied, tokens outside the
top-k / top-p nucleus set to -inf) and draws one token per row from them with `draw`. The sampler
records two log-probabilities per sampled token: under the model itself (temperature 1, what
GRPO's policy ratio needs) and under the processed distribution (what was actually sampled from).
`Greedy` is the temperature-0 limit: argmax, processed log-prob 0.

Drawing is inverse-CDF sampling with one uniform per row: exact for the categorical
distribution, and it needs one random number per row instead of a Gumbel variate per vocabulary
entry (threefry for [64, 32000] Gumbels cost 35 ms per decode step on a 2-core CPU, more than the
model). The CDF is searched in two levels (block sums, then one block), so no length-V scan runs.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from corea_jax.errors import CoreaError

_NEG_INF = -jnp.inf


def first_argmax(x: jax.Array) -> jax.Array:
    """[B, V] -> [B] int32: index of the row maximum, ties to the lowest index (as torch.argmax).

    Two plain reductions; XLA's CPU argmax (a variadic (value, index) reduce) does not vectorise
    and took twice as long over [64, 32000].
    """
    best = jnp.max(x, axis=-1, keepdims=True)
    index = jnp.arange(x.shape[-1], dtype=jnp.int32)
    first = jnp.min(jnp.where(x == best, index, x.shape[-1]), axis=-1)
    return jnp.minimum(first, x.shape[-1] - 1)  # a NaN row has no maximum: clamp into range


def token_logprobs(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """logits [..., V] float32, targets [...] int -> [...] log-softmax(logits) at the targets.

    Any leading shape: the sampler's [B, V] rows of one decode step and GRPO's [B, C, V]
    completion tokens use this one function.
    """
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def _last_positive(weights: jax.Array) -> jax.Array:
    """[B, entries] non-negative -> [B] int32 index of the last positive entry (0 if none)."""
    index = jnp.arange(weights.shape[-1], dtype=jnp.int32)
    return jnp.maximum(jnp.max(jnp.where(weights > 0, index, -1), axis=-1), 0)


def inverse_cdf_sample(logits: jax.Array, uniforms: jax.Array) -> jax.Array:
    """logits [B, V] (-inf allowed), uniforms [B] in [0, 1) -> [B] int32 tokens ~ softmax(logits).

    Row b takes the first token whose cumulative weight exceeds uniforms[b] x total weight. The
    cumulative sums run over blocks of about sqrt(V) tokens, then inside the chosen block; a
    rounding overshoot is clamped to the last token of positive weight, so a token of zero
    probability (a -inf logit) is never returned.
    """
    b, v = logits.shape
    block = 128 * max(1, math.ceil(math.sqrt(v) / 128))
    blocks_n = -(-v // block)
    weights = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    weights = jnp.pad(weights, ((0, 0), (0, blocks_n * block - v))).reshape(b, blocks_n, block)
    block_sums = jnp.sum(weights, axis=-1)  # [B, blocks]
    block_cum = jnp.cumsum(block_sums, axis=-1)
    target = uniforms.astype(jnp.float32) * block_cum[:, -1]
    j = jnp.sum(block_cum <= target[:, None], axis=-1, dtype=jnp.int32)
    j = jnp.minimum(j, _last_positive(block_sums))
    before = jnp.where(j > 0, jnp.take_along_axis(block_cum, (j - 1)[:, None], -1)[:, 0], 0.0)
    inner = jnp.take_along_axis(weights, j[:, None, None], axis=1)[:, 0]  # [B, block]
    i = jnp.sum(jnp.cumsum(inner, axis=-1) <= (target - before)[:, None], axis=-1)
    i = jnp.minimum(i.astype(jnp.int32), _last_positive(inner))
    return j * block + i


def row_uniforms(keys: jax.Array) -> jax.Array:
    """[B] PRNG keys -> [B] float32 uniforms in [0, 1), one per row."""
    return jax.vmap(lambda key: jax.random.uniform(key, dtype=jnp.float32))(keys)


@dataclasses.dataclass(frozen=True)
class Greedy:
    def processed_logits(self, logits: jax.Array) -> jax.Array:
        """[B, V] -> [B, V]: all mass on the argmax (ties to the lowest id, as torch.argmax)."""
        best = first_argmax(logits)
        return jnp.where(jax.nn.one_hot(best, logits.shape[-1], dtype=bool), 0.0, _NEG_INF)

    def draw(self, logits: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
        """logits [B, V], keys [B] -> (tokens [B] int32, processed log-probs [B]: all 0)."""
        del keys
        return first_argmax(logits), jnp.zeros(logits.shape[:1], jnp.float32)


@dataclasses.dataclass(frozen=True)
class Temperature:
    temperature: float = 1.0

    def __post_init__(self):
        if not self.temperature > 0:
            raise CoreaError(f"temperature must be > 0 (use Greedy), got {self.temperature}")

    def processed_logits(self, logits: jax.Array) -> jax.Array:
        return logits / self.temperature

    def draw(self, logits: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
        """logits [B, V], keys [B] (one per row) -> (tokens [B] int32, log-probs [B] under the
        processed distribution). At temperature 1 these equal the model's log-probs, which the
        sampler also computes; XLA merges the two identical computations."""
        processed = self.processed_logits(logits)
        tokens = inverse_cdf_sample(processed, row_uniforms(keys))
        return tokens, token_logprobs(processed, tokens)


@dataclasses.dataclass(frozen=True)
class TopK(Temperature):
    """Keeps the k most likely tokens (ties at the k-th value are all kept)."""

    k: int = 50

    def processed_logits(self, logits: jax.Array) -> jax.Array:
        if self.k < 1:
            raise CoreaError(f"top_k must be >= 1, got {self.k}")
        scaled = super().processed_logits(logits)
        kth = jax.lax.top_k(scaled, min(self.k, scaled.shape[-1]))[0][..., -1:]
        return jnp.where(scaled >= kth, scaled, _NEG_INF)


@dataclasses.dataclass(frozen=True)
class TopP(Temperature):
    """Nucleus sampling: the smallest set of most likely tokens whose mass reaches p (after the
    temperature); the most likely token is always kept."""

    p: float = 1.0

    def processed_logits(self, logits: jax.Array) -> jax.Array:
        if not 0 < self.p <= 1:
            raise CoreaError(f"top_p must be in (0, 1], got {self.p}")
        scaled = super().processed_logits(logits)
        order = jnp.argsort(-scaled, axis=-1)
        sorted_logits = jnp.take_along_axis(scaled, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        keep_sorted = mass_before < self.p
        keep = (
            jnp.zeros_like(keep_sorted)
            .at[jnp.arange(scaled.shape[0])[:, None], order]
            .set(keep_sorted)
        )
        return jnp.where(keep, scaled, _NEG_INF)


def make_method(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None):
    """The method for HF-style knobs: temperature 0 -> Greedy; top-k and top-p are exclusive."""
    if temperature == 0:
        return Greedy()
    if top_k is not None and top_p is not None and top_p < 1:
        raise CoreaError("choose one of top_k and top_p")
    if top_k is not None:
        return TopK(temperature=temperature, k=top_k)
    if top_p is not None and top_p < 1:
        return TopP(temperature=temperature, p=top_p)
    return Temperature(temperature=temperature)

"""Sampling methods: frozen dataclasses that turn float32 logits into a sampling distribution.

Each method maps logits [B, V] to *processed* logits (temperature applied, tokens outside the
top-k / top-p nucleus set to -inf). The sampler draws from the processed distribution and records
two log-probabilities per sampled token: under the model itself (temperature 1, what GRPO's
policy ratio needs) and under the processed distribution (what was actually sampled from).
`Greedy` is the temperature-0 limit: argmax, processed log-prob 0.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from corea_jax.errors import CoreaError

_NEG_INF = -jnp.inf


@dataclasses.dataclass(frozen=True)
class Greedy:
    def processed_logits(self, logits: jax.Array) -> jax.Array:
        """[B, V] -> [B, V]: all mass on the argmax (ties to the lowest id, as torch.argmax)."""
        best = jnp.argmax(logits, axis=-1)
        return jnp.where(jax.nn.one_hot(best, logits.shape[-1], dtype=bool), 0.0, _NEG_INF)

    def sample(self, logits: jax.Array, key: jax.Array) -> jax.Array:
        del key
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Temperature:
    temperature: float = 1.0

    def __post_init__(self):
        if not self.temperature > 0:
            raise CoreaError(f"temperature must be > 0 (use Greedy), got {self.temperature}")

    def processed_logits(self, logits: jax.Array) -> jax.Array:
        return logits / self.temperature

    def sample(self, logits: jax.Array, key: jax.Array) -> jax.Array:
        return jax.random.categorical(key, self.processed_logits(logits)).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class TopK(Temperature):
    """Keeps the k most likely tokens (ties at the k-th value are all kept)."""

    k: int = 50

    def processed_logits(self, logits: jax.Array) -> jax.Array:
        if self.k < 1:
            raise CoreaError(f"top_k must be >= 1, got {self.k}")
        scaled = logits / self.temperature
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
        scaled = logits / self.temperature
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


METHODS = {"greedy": Greedy, "temperature": Temperature, "top_k": TopK, "top_p": TopP}


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

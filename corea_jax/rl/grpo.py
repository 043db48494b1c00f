"""The GRPO objective: token log-probs, the clipped ratio loss, KL to a reference, aggregation.

Axis letters (`corea_jax.rl.rollout`): R rows (prompts x samples, flattened: a row is one
completion), C completion slots, V vocab. The group axis is gone here on purpose: advantages
are computed per group upstream (`corea_jax.rl.advantages`, `[B, G]`) and each row carries its
own: `[R]`, one per completion (GRPO), or `[R, C]`, one per token (segment-wise advantages,
`AdvantageConfig.spans`); `[R]` is the broadcast special case, A[r, t] = A[r].

Loss, per completion token t of row r (PPO-style clipping, Schulman et al.; GRPO, Shao et al.):

    ratio = exp(logp - logp_old)
    l[r, t] = -min(ratio * A[r, t], clip(ratio, 1 - eps_low, 1 + eps_high) * A[r, t])
              + beta * k3[r, t]
    k3 = exp(ref - logp) - (ref - logp) - 1        (Schulman's unbiased, positive KL estimator)

Aggregation is a weighted sum `sum(l * w)` whose weights `w [R, C]` are fixed from the *whole*
batch before it is split into micro-batches, so gradient accumulation is exact:
- `token_mean`: w = mask / (tokens in the batch)  (DAPO's token-level mean);
- `sequence_mean`: w = mask / (len_r * R)  (the original GRPO: mean over each sequence, then rows);
- `dr_grpo`: w = mask / (R * max_len)  (Dr. GRPO's constant normaliser, no length bias).
Defaults (PAPER.md leaves them open): eps_low = eps_high = 0.2 (0.28 for clip-higher), beta 0
(no reference model is materialised), `token_mean`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from corea_jax.errors import CoreaError
from corea_jax.sampling.methods import token_logprobs  # noqa: F401  re-exported; its one home


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """GRPO loss options (hashable: a static argument of the jitted step)."""

    eps_low: float = 0.2
    eps_high: float = 0.2
    beta: float = 0.0
    aggregation: str = "token_mean"
    max_completion_len: int | None = None  # dr_grpo's constant; None: the batch's C

    def __post_init__(self):
        if self.aggregation not in AGGREGATIONS:
            raise CoreaError(
                f"loss aggregation {self.aggregation!r}: expected one of {sorted(AGGREGATIONS)}"
            )
        if self.eps_low < 0 or self.eps_high < 0 or self.beta < 0:
            raise CoreaError(f"loss: eps_low, eps_high and beta must be >= 0, got {self}")


def _token_mean(mask, config):
    return mask / jnp.maximum(mask.sum(), 1.0)


def _sequence_mean(mask, config):
    lengths = jnp.maximum(mask.sum(axis=1, keepdims=True), 1.0)
    return mask / (lengths * mask.shape[0])


def _dr_grpo(mask, config):
    max_len = config.max_completion_len or mask.shape[1]
    return mask / (mask.shape[0] * max_len)


AGGREGATIONS: dict[str, Callable] = {
    "token_mean": _token_mean,
    "sequence_mean": _sequence_mean,
    "dr_grpo": _dr_grpo,
}


def loss_weights(mask: jax.Array, config: LossConfig) -> jax.Array:
    """mask [R, C] (1 on completion tokens) -> aggregation weights [R, C], summing to <= 1."""
    return AGGREGATIONS[config.aggregation](mask.astype(jnp.float32), config)


def token_entropy(logits: jax.Array) -> jax.Array:
    """logits [..., V] -> entropy of the softmax [...], in nats."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def policy_loss(
    logprobs: jax.Array,
    old_logprobs: jax.Array,
    advantages: jax.Array,
    weights: jax.Array,
    config: LossConfig,
    ref_logprobs: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The clipped GRPO loss of one (micro-)batch.

    Args:
      logprobs: [R, C] log-probs of the completion tokens under the policy being trained.
      old_logprobs: [R, C] under the rollout policy (the sampler's temperature-1 log-probs).
      advantages: [R, C] per token, or [R] one per completion (broadcast over C).
      weights: [R, C] from `loss_weights` on the full batch (0 off the completion).
      ref_logprobs: [R, C] under the reference model; required when config.beta > 0.

    Returns:
      (loss, metrics): metrics are weighted sums too (so they add over micro-batches):
      "clip_fraction", "ratio", "kl" (the k3 estimate), "pg_loss".
    """
    adv = advantages.astype(jnp.float32)
    if adv.ndim == 1:
        adv = adv[:, None]
    log_ratio = logprobs - old_logprobs
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1.0 - config.eps_low, 1.0 + config.eps_high)
    pg = -jnp.minimum(ratio * adv, clipped * adv)
    is_clipped = (ratio * adv > clipped * adv).astype(jnp.float32)
    per_token = pg
    if config.beta > 0:
        if ref_logprobs is None:
            raise CoreaError("loss: beta > 0 needs reference log-probs")
        d = ref_logprobs - logprobs
        kl = jnp.exp(d) - d - 1.0
        per_token = per_token + config.beta * kl
    else:
        kl = jnp.zeros_like(pg)
    total = lambda x: jnp.sum(x * weights)  # noqa: E731
    metrics = {
        "pg_loss": total(pg),
        "clip_fraction": total(is_clipped),
        "ratio": total(ratio),
        "kl": total(kl),
    }
    return total(per_token), metrics

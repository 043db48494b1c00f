"""Group-relative advantages (GRPO), pure `jnp` over `[B, G]` rewards.

advantage = (r - baseline) / scale, where
- baseline (`BASELINES`): "mean", the group mean (GRPO); or "rloo", the mean of the other G - 1
  samples (leave-one-out, RLOO), which equals G / (G - 1) times the mean-centred reward;
- scale (`STD_SCALINGS`): "none" (default), "group" (GRPO's per-prompt reward std) or "batch"
  (one std over all B * G rewards, as in LitePPO).

Departure from standard GRPO: the default is **no std scaling**. Dividing by the group std is
known to push models towards overconfidence (Bereket & Leskovec 2025); RLCR turns it off, and
PAPER.md makes it selectable with mean-centring as the default.

A zero-variance group (every sample got the same reward: all right or all wrong with the same
confidence) carries no signal: its advantages are exactly 0 in every mode (no 0/eps blow-up),
and the share of such groups is returned for logging.

Defaults where nothing is prescribed (fields of `AdvantageConfig`): `ddof=1` (the unbiased std,
as `torch.std` in common GRPO code), `eps=1e-6` added to the std before dividing, and
`zero_variance_tol=1e-6`: a group whose population std is at most this is zero-variance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from corea_jax.errors import CoreaError


def _std(x: jnp.ndarray, axis, ddof: int) -> jnp.ndarray:
    n = x.size if axis is None else x.shape[1]
    if n - ddof <= 0:
        raise CoreaError(f"std with ddof={ddof} needs more than {ddof} samples, got {n}")
    mean = jnp.mean(x, axis=axis, keepdims=True)
    return jnp.sqrt(jnp.sum(jnp.square(x - mean), axis=axis, keepdims=True) / (n - ddof))


def mean_baseline(rewards: jnp.ndarray) -> jnp.ndarray:
    """`[B, G]` -> `[B, G]`: r minus the group mean."""
    return rewards - jnp.mean(rewards, axis=1, keepdims=True)


def rloo_baseline(rewards: jnp.ndarray) -> jnp.ndarray:
    """`[B, G]` -> `[B, G]`: r minus the mean of the other G - 1 rewards of the group."""
    g = rewards.shape[1]
    if g < 2:
        raise CoreaError(f"baseline='rloo' needs a group of at least 2 samples, got G={g}")
    others = (jnp.sum(rewards, axis=1, keepdims=True) - rewards) / (g - 1)
    return rewards - others


BASELINES: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    "mean": mean_baseline,
    "rloo": rloo_baseline,
}


def no_scale(rewards: jnp.ndarray, ddof: int) -> jnp.ndarray:
    """`[B, 1]` ones: no std scaling."""
    del ddof
    return jnp.ones((rewards.shape[0], 1), rewards.dtype)


def group_scale(rewards: jnp.ndarray, ddof: int) -> jnp.ndarray:
    """`[B, 1]`: the std of each prompt's G rewards."""
    return _std(rewards, 1, ddof)


def batch_scale(rewards: jnp.ndarray, ddof: int) -> jnp.ndarray:
    """`[B, 1]`: one std over all B * G rewards, broadcast."""
    return jnp.broadcast_to(_std(rewards, None, ddof), (rewards.shape[0], 1))


STD_SCALINGS: dict[str, Callable[[jnp.ndarray, int], jnp.ndarray]] = {
    "none": no_scale,
    "group": group_scale,
    "batch": batch_scale,
}


@dataclasses.dataclass(frozen=True)
class AdvantageConfig:
    """How rewards become advantages. Hashable: pass it as a static argument.

    Attributes:
      baseline: a key of `BASELINES` ("mean" or "rloo").
      std_scaling: a key of `STD_SCALINGS` ("none", "group" or "batch").
      ddof: delta degrees of freedom of the std (1: unbiased).
      eps: added to the std before dividing.
      zero_variance_tol: population std at or below which a group is zero-variance.
    """

    baseline: str = "mean"
    std_scaling: str = "none"
    ddof: int = 1
    eps: float = 1e-6
    zero_variance_tol: float = 1e-6

    def __post_init__(self):
        if self.baseline not in BASELINES:
            raise CoreaError(
                f"AdvantageConfig.baseline={self.baseline!r}: expected one of {sorted(BASELINES)}"
            )
        if self.std_scaling not in STD_SCALINGS:
            raise CoreaError(
                f"AdvantageConfig.std_scaling={self.std_scaling!r}: expected one of "
                f"{sorted(STD_SCALINGS)}"
            )
        if self.ddof not in (0, 1) or self.eps < 0 or self.zero_variance_tol < 0:
            raise CoreaError(
                f"AdvantageConfig: ddof={self.ddof} (0 or 1), eps={self.eps} and "
                f"zero_variance_tol={self.zero_variance_tol} (>= 0) out of range"
            )


def group_advantages(
    rewards: jnp.ndarray, config: AdvantageConfig = AdvantageConfig()
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Advantages of `[B, G]` rewards. Jittable with `config` static.

    Returns:
      (advantages `[B, G]` float32, stats) where stats holds "zero_variance" (`[B]` bool: the
      group's rewards are all equal), "zero_variance_fraction" (scalar: the share of such
      groups) and "reward_std" (`[B]`: each group's population std).
    """
    r = rewards.astype(jnp.float32)
    group_std = _std(r, 1, 0)  # [B, 1]
    zero_var = group_std[:, 0] <= config.zero_variance_tol
    centred = BASELINES[config.baseline](r)
    scale = STD_SCALINGS[config.std_scaling](r, config.ddof)
    adv = centred / (scale + config.eps) if config.std_scaling != "none" else centred
    adv = jnp.where(zero_var[:, None], 0.0, adv)
    stats = {
        "zero_variance": zero_var,
        "zero_variance_fraction": jnp.mean(zero_var.astype(jnp.float32)),
        "reward_std": group_std[:, 0],
    }
    return adv, stats

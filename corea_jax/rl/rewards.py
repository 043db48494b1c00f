"""Reward kernels: the reward of each of G completions of B prompts, pure `jnp` over `[B, G]`.

reward = w_c * correctness + w_f * format + w_cal * calibration, where
- correctness c in {0, 1}: the verified answer (`corea_jax.scoring.grading`);
- format f in {0, 1}: layout complete and confidence parseable (`corea_jax.scoring.parsing`);
- calibration = -distance(q, target), zero where the format failed (PAPER.md). q is the stated
  confidence. The target is the **group accuracy** p_hat = mean_j c_j over the G samples of
  the prompt (COREA), or the sample's own c (RLCR's Brier reward, `c - (q - c)^2`).

Variants are data: `DISTANCES` and `TARGETS` hold small pure functions, `RewardConfig` picks
them by name, and `PRESETS` names the paper's runs: `rlvr` (no calibration term), `brier`
(L2 to the sample's c), `corea` (L1 to p_hat), `corea_l2`, `corea_kl`.

Defaults for what the paper leaves open (fields of `RewardConfig`):
- weights 1, 1, 1 (`correctness_weight`, `format_weight`, `calibration_weight`) and a 1/0
  format reward;
- p_hat counts the sample itself (`target="group"`, the paper's definition); `"group_loo"`
  gives the leave-one-out accuracy of the other G - 1 samples instead;
- `target_mix` lambda = 1: the target is `TARGETS[target]` alone (COREA's p_hat). In general it
  is lambda * TARGETS[target] + (1 - lambda) * c, the sample's own correctness: 0 is the sample
  target (Brier-like), 0.5 DCPO's blend of group and sample (arXiv 2603.09117). With
  `target="sample"` every lambda gives c. lambda = 1 computes exactly what the kernel computed
  before the option existed (1 * p + 0 * c is p in floating point);
- KL direction: KL(Bernoulli(target) || Bernoulli(q)), the target's law first, like a
  cross-entropy against p_hat; q is clipped to [kl_eps, 1 - kl_eps] with `kl_eps=0.01`, so the
  term is bounded by log(1/kl_eps) ~ 4.6 (with a smaller eps, one overconfident miss could
  outweigh every other term);
- where the format failed the confidence is never read: it may hold any value, NaN included.
  Its calibration term is 0 (`failed_calibration="zero"`, PAPER.md's rule) for the L1 and L2
  presets, where any valid answer already scores at least as much (the format reward 1 covers
  the largest distance, 1). The KL distance reaches log(1/kl_eps) ~ 4.6, so with 0 a dropped
  confidence tag would pay more than a valid, confidently wrong answer (1 - 4.6): `corea_kl`
  gives a failed format the *worst* calibration value instead (`failed_calibration="worst"`:
  minus the largest distance any stated q could have had from this target), so failing the
  format never pays.

Why L1 gives discrete confidences (a note, not a change): the q that minimises the expected
L1 distance E|q - p_hat| over the group's sampling is a *median* of p_hat's distribution, not
its mean, so L1 is not a proper scoring rule for the chance of being right; when p_hat is
bimodal (a question is mostly solved or mostly not) the optimum sits on a mode and stated
confidences cluster on a few values. L2 to p_hat (`corea_l2`) is proper (its optimum is the
mean): the variant to prefer when a smooth accuracy/cost curve over tau matters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from corea_jax.errors import CoreaError


def group_accuracy(correct: jnp.ndarray) -> jnp.ndarray:
    """p_hat: `[B, G]` 0/1 correctness -> `[B, G]` mean over the group, broadcast back."""
    c = correct.astype(jnp.float32)
    return jnp.broadcast_to(jnp.mean(c, axis=1, keepdims=True), c.shape)


def group_accuracy_loo(correct: jnp.ndarray) -> jnp.ndarray:
    """`[B, G]` -> `[B, G]` accuracy of the other G - 1 samples of each prompt (G >= 2)."""
    c = correct.astype(jnp.float32)
    g = c.shape[1]
    if g < 2:
        raise CoreaError(f"target='group_loo' needs a group of at least 2 samples, got G={g}")
    return (jnp.sum(c, axis=1, keepdims=True) - c) / (g - 1)


def sample_target(correct: jnp.ndarray) -> jnp.ndarray:
    """`[B, G]` -> `[B, G]`: each sample's own correctness (RLCR's Brier target)."""
    return correct.astype(jnp.float32)


TARGETS: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    "group": group_accuracy,
    "group_loo": group_accuracy_loo,
    "sample": sample_target,
}


def l1_distance(q: jnp.ndarray, target: jnp.ndarray, kl_eps: float) -> jnp.ndarray:
    """|q - target|, elementwise `[B, G]` (COREA's choice)."""
    del kl_eps
    return jnp.abs(q - target)


def l2_distance(q: jnp.ndarray, target: jnp.ndarray, kl_eps: float) -> jnp.ndarray:
    """(q - target)^2, elementwise `[B, G]`."""
    del kl_eps
    return jnp.square(q - target)


def _xlogy(x, y):
    return jnp.where(x == 0, 0.0, x * jnp.log(jnp.where(x == 0, 1.0, y)))


def kl_distance(q: jnp.ndarray, target: jnp.ndarray, kl_eps: float) -> jnp.ndarray:
    """KL(Bernoulli(target) || Bernoulli(q)) with q clipped to [kl_eps, 1 - kl_eps], `[B, G]`.

    0 * log 0 = 0, so a target of exactly 0 or 1 is fine.
    """
    q = jnp.clip(q, kl_eps, 1.0 - kl_eps)
    p = target
    return _xlogy(p, p / q) + _xlogy(1.0 - p, (1.0 - p) / (1.0 - q))


DISTANCES: dict[str, Callable[[jnp.ndarray, jnp.ndarray, float], jnp.ndarray]] = {
    "l1": l1_distance,
    "l2": l2_distance,
    "kl": kl_distance,
}


def worst_distance(name: str, target: jnp.ndarray, kl_eps: float) -> jnp.ndarray:
    """`[B, G]`: the largest distance any stated q in [0, 1] could have from `target`.

    Every distance here is convex in q, so the largest is at an end: q = 0 or 1 (clipped to
    [kl_eps, 1 - kl_eps] for "kl", as the distance itself clips)."""
    distance = DISTANCES[name]
    return jnp.maximum(
        distance(jnp.zeros_like(target), target, kl_eps),
        distance(jnp.ones_like(target), target, kl_eps),
    )


FAILED_CALIBRATION = ("zero", "worst")


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """Which reward terms, and how much each counts. Hashable: pass it as a static argument.

    Attributes:
      calibration: a key of `DISTANCES`, or None for no calibration term (RLVR).
      target: a key of `TARGETS`: "group" (p_hat), "group_loo", or "sample" (Brier).
      target_mix: lambda in [0, 1]: the calibration target is lambda * TARGETS[target] +
        (1 - lambda) * c (1: the target alone, COREA; 0: c; 0.5: DCPO).
      correctness_weight, format_weight, calibration_weight: the weights of the sum.
      kl_eps: confidence clipping for the "kl" distance.
      failed_calibration: the calibration term where the format failed: "zero" (PAPER.md) or
        "worst" (minus the largest possible distance; see the module docstring).
    """

    calibration: str | None = "l1"
    target: str = "group"
    target_mix: float = 1.0
    correctness_weight: float = 1.0
    format_weight: float = 1.0
    calibration_weight: float = 1.0
    kl_eps: float = 0.01
    failed_calibration: str = "zero"

    def __post_init__(self):
        if self.calibration is not None and self.calibration not in DISTANCES:
            raise CoreaError(
                f"RewardConfig.calibration={self.calibration!r}: expected one of "
                f"{sorted(DISTANCES)} or None"
            )
        if self.target not in TARGETS:
            raise CoreaError(
                f"RewardConfig.target={self.target!r}: expected one of {sorted(TARGETS)}"
            )
        if not 0.0 <= self.target_mix <= 1.0:  # NaN fails too
            raise CoreaError(f"RewardConfig.target_mix={self.target_mix}: must be in [0, 1]")
        if not 0.0 < self.kl_eps < 0.5:
            raise CoreaError(f"RewardConfig.kl_eps={self.kl_eps}: must be in (0, 0.5)")
        if self.failed_calibration not in FAILED_CALIBRATION:
            raise CoreaError(
                f"RewardConfig.failed_calibration={self.failed_calibration!r}: expected one of "
                f"{FAILED_CALIBRATION}"
            )


PRESETS: dict[str, RewardConfig] = {
    "rlvr": RewardConfig(calibration=None),
    "brier": RewardConfig(calibration="l2", target="sample"),
    "corea": RewardConfig(calibration="l1", target="group"),
    "corea_l2": RewardConfig(calibration="l2", target="group"),
    "corea_kl": RewardConfig(calibration="kl", target="group", failed_calibration="worst"),
}


def reward_config(preset: str = "corea", **overrides) -> RewardConfig:
    """`PRESETS[preset]` with some fields replaced, e.g. `reward_config("corea", kl_eps=0.05)`."""
    if preset not in PRESETS:
        raise CoreaError(f"reward preset {preset!r}: expected one of {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(RewardConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise CoreaError(f"reward option(s) {unknown}: expected some of {sorted(fields)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


@dataclasses.dataclass(frozen=True)
class RewardPresetConfig:
    """The `config.reward` section: a preset of `PRESETS` (variants are data) with the weights
    and `kl_eps` laid over it, and an optional user term. Defaults are `RewardConfig`'s.

    `extra_term` is "module:function" (or "" for none): a function of keyword arguments
    `correct`, `confidence`, `format_ok` ([B, G] arrays) and `texts` (the R = B * G completions)
    returning [B, G] rewards added to the sum (`corea_jax.rl.rollout_rewards`).
    """

    preset: str = "corea"
    correctness_weight: float = RewardConfig.correctness_weight
    format_weight: float = RewardConfig.format_weight
    calibration_weight: float = RewardConfig.calibration_weight
    kl_eps: float = RewardConfig.kl_eps
    target_mix: float = RewardConfig.target_mix  # [open] 1: the preset's target (COREA's p_hat)
    extra_term: str = ""
    failed_calibration: str = ""  # "" = the preset's ("worst" for corea_kl, else "zero")

    def __post_init__(self):
        # Checked when the config is read, not at the first rollout's `kernel()`.
        if not 0.0 <= self.target_mix <= 1.0:  # NaN fails too
            raise CoreaError(f"reward.target_mix={self.target_mix}: must be in [0, 1]")

    def kernel(self) -> RewardConfig:
        """The `RewardConfig` the reward kernel is jitted with."""
        failed = {"failed_calibration": self.failed_calibration} if self.failed_calibration else {}
        return reward_config(
            self.preset,
            correctness_weight=self.correctness_weight,
            format_weight=self.format_weight,
            calibration_weight=self.calibration_weight,
            kl_eps=self.kl_eps,
            target_mix=self.target_mix,
            **failed,
        )


def compute_rewards(
    correct: jnp.ndarray,
    confidence: jnp.ndarray,
    format_ok: jnp.ndarray,
    config: RewardConfig = PRESETS["corea"],
) -> dict[str, jnp.ndarray]:
    """Rewards and their parts for a batch of groups. Jittable with `config` static.

    Args:
      correct: `[B, G]` bool or 0/1: the answer was verified correct.
      confidence: `[B, G]` float: the stated confidence q (read only where `format_ok`).
      format_ok: `[B, G]` bool: the layout is complete and the confidence valid.
      config: the reward terms and weights (`PRESETS[...]` or `reward_config(...)`).

    Returns:
      A dict of `[B, G]` float32 arrays: "reward" (the weighted sum), and, unweighted for
      logging, "correctness", "format", "calibration" (-distance; where the format failed 0,
      or minus the worst distance with `failed_calibration="worst"`),
      and "target" (p_hat, or c for "sample", blended with c by `target_mix`).
    """
    c = correct.astype(jnp.float32)
    ok = format_ok.astype(bool)
    f = ok.astype(jnp.float32)
    target = config.target_mix * TARGETS[config.target](c) + (1.0 - config.target_mix) * c
    if config.calibration is None:
        calibration = jnp.zeros_like(c)
    else:
        q = jnp.where(ok, confidence.astype(jnp.float32), 0.5)  # no NaN can leak through
        distance = DISTANCES[config.calibration](q, target, config.kl_eps)
        failed = 0.0
        if config.failed_calibration == "worst":
            failed = -worst_distance(config.calibration, target, config.kl_eps)
        calibration = jnp.where(ok, -distance, failed)
    reward = (
        config.correctness_weight * c
        + config.format_weight * f
        + config.calibration_weight * calibration
    )
    return {
        "reward": reward,
        "correctness": c,
        "format": f,
        "calibration": calibration,
        "target": target,
    }


def outcome_reward(parts: dict[str, jnp.ndarray], config: RewardConfig) -> jnp.ndarray:
    """`[B, G]`: the reward without its calibration term, w_c * correctness + w_f * format, from
    `compute_rewards`' parts (the non-confidence tokens' reward of segment-wise advantages)."""
    return config.correctness_weight * parts["correctness"] + config.format_weight * parts["format"]

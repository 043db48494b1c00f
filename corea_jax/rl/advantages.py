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

Segment-wise advantages (`spans`; a departure the paper leaves open, off by default). GRPO
gives each completion one advantage, so the tokens of `<confidence>0.85</confidence>` are also
pushed by the correctness advantage, which is noise for them. With `spans="confidence"` (as in
DCPO, arXiv 2603.09117, and Blockwise Advantage Estimation, arXiv 2602.10231) the advantage is
`[B, G, C]`, one per completion token (`token_advantages`):
- the tokens of the confidence span the parser reads (`corea_jax.rl.spans`) get the
  *calibration advantage* (`calibration_advantages`): the weighted calibration reward
  w_cal * calibration, centred with the same `baseline` ("mean" or "rloo") and divided by the
  same `std_scaling`, computed over the **format-valid** samples only: an invalid confidence was
  never read, so it is not a point of comparison, and its span tokens keep the rest's
  advantage, which carries the format penalty (otherwise a "zero" failed calibration, the best
  value, would *reward* the tokens of `<confidence>1.5</confidence>`);
- every other completion token gets the advantage of correctness + format (+ the user term),
  computed by `group_advantages` as in the one-advantage update.
`confidence_baseline` picks the comparison set of the calibration advantage: "group" (every
valid sample of the prompt) or "outcome" (BAE's outcome-conditioned baseline: the valid right
samples of a group among themselves, the valid wrong ones among themselves, so the confidence
is compared with samples that earned the same correctness). With COREA's target
(`reward.target_mix=1`) a group's samples share one target, p_hat, and "group" is the natural
comparison; "outcome" matters when the target leans on the sample's own correctness
(`target_mix < 1`, Brier), where right and wrong samples' calibration rewards differ in level
by construction, a level the confidence tokens cannot change. A comparison set of one sample
gets 0 (nothing to compare with; the mean baseline gives 0 there anyway, RLOO would be
undefined), and so does one whose rewards are all equal. The std scaling divides by the std of
the calibration rewards of the group's (or batch's) valid samples, for both baselines: the two
differ only in centring. A reward without a calibration term (preset rlvr, or weight 0) has
nothing to split: the caller then keeps one advantage per completion
(`corea_jax.rl.rollout_rewards`), so spans="confidence" with no calibration is exactly the
one-advantage update.
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


SPANS = ("none", "confidence")


def _group_stratum(correct: jnp.ndarray, valid: jnp.ndarray) -> list[jnp.ndarray]:
    del correct
    return [valid]


def _outcome_strata(correct: jnp.ndarray, valid: jnp.ndarray) -> list[jnp.ndarray]:
    return [valid & correct, valid & ~correct]


# confidence_baseline -> (correct, valid) [B, G] bool -> the disjoint comparison sets [B, G].
CONFIDENCE_BASELINES: dict[str, Callable[[jnp.ndarray, jnp.ndarray], list[jnp.ndarray]]] = {
    "group": _group_stratum,
    "outcome": _outcome_strata,
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
      spans: "none" (one advantage per completion: the paper's GRPO) or "confidence" (the
        confidence span's tokens get the calibration advantage; see the module docstring).
      confidence_baseline: with spans="confidence", a key of `CONFIDENCE_BASELINES`: "group"
        (centred over the group's valid samples) or "outcome" (over its valid right ones and
        its valid wrong ones separately, BAE).
    """

    baseline: str = "mean"
    std_scaling: str = "none"
    ddof: int = 1
    eps: float = 1e-6
    zero_variance_tol: float = 1e-6
    spans: str = "none"
    confidence_baseline: str = "group"

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
        if self.spans not in SPANS:
            raise CoreaError(f"advantage.spans={self.spans!r}: expected one of {SPANS}")
        if self.confidence_baseline not in CONFIDENCE_BASELINES:
            raise CoreaError(
                f"advantage.confidence_baseline={self.confidence_baseline!r}: expected one of "
                f"{sorted(CONFIDENCE_BASELINES)}"
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


def _masked_sums(r: jnp.ndarray, member: jnp.ndarray, axis):
    """Count, sum and population std of `r` over `member` along `axis` (None: everything)."""
    m = member.astype(jnp.float32)
    n = jnp.sum(m, axis=axis, keepdims=True)
    total = jnp.sum(r * m, axis=axis, keepdims=True)
    mean = total / jnp.maximum(n, 1.0)
    pop_std = jnp.sqrt(
        jnp.sum(m * jnp.square(r - mean), axis=axis, keepdims=True) / jnp.maximum(n, 1.0)
    )
    return n, total, mean, pop_std


def _centred_within(r, member, baseline: str, tol: float) -> jnp.ndarray:
    """`[B, G]`: r minus the baseline of its group's `member` samples; 0 off `member`, in a set
    of one sample and in a set whose rewards are all equal."""
    n, total, mean, pop_std = _masked_sums(r, member, 1)
    if baseline == "mean":
        centred = r - mean
    else:  # rloo: the mean of the other members
        centred = r - (total - r) / jnp.maximum(n - 1.0, 1.0)
    keep = member & (n >= 2.0) & (pop_std > tol)
    return jnp.where(keep, centred, 0.0)


def _masked_scale(r, valid, config: AdvantageConfig) -> jnp.ndarray:
    """`[B, 1]` (or broadcastable): the std (ddof) of the valid samples' rewards, per group
    ("group") or over the batch ("batch"); 1 where too few samples define it, or for "none"."""
    if config.std_scaling == "none":
        return jnp.ones((r.shape[0], 1), jnp.float32)
    axis = 1 if config.std_scaling == "group" else None
    n, _, _, pop_std = _masked_sums(r, valid, axis)
    dof = n - config.ddof
    std = jnp.sqrt(jnp.square(pop_std) * n / jnp.maximum(dof, 1.0))
    return jnp.broadcast_to(jnp.where(dof > 0, std, 1.0), (r.shape[0], 1))


def calibration_advantages(
    calibration_reward: jnp.ndarray,
    correct: jnp.ndarray,
    valid: jnp.ndarray,
    config: AdvantageConfig = AdvantageConfig(),
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """The confidence span's advantage (module docstring). Jittable with `config` static.

    Args:
      calibration_reward: `[B, G]` the weighted calibration term, w_cal * calibration.
      correct: `[B, G]` bool or 0/1 (the strata of `confidence_baseline="outcome"`).
      valid: `[B, G]` bool: format-valid samples (their confidence was read).

    Returns:
      (advantages `[B, G]` float32, 0 where not `valid`; stats with
      "zero_variance_fraction": the share of groups with no calibration signal: fewer than 2
      valid samples, or all their calibration rewards equal).
    """
    r = calibration_reward.astype(jnp.float32)
    c, v = correct.astype(bool), valid.astype(bool)
    centred = sum(
        _centred_within(r, s, config.baseline, config.zero_variance_tol)
        for s in CONFIDENCE_BASELINES[config.confidence_baseline](c, v)
    )
    adv = (
        centred / (_masked_scale(r, v, config) + config.eps)
        if config.std_scaling != "none"
        else centred
    )
    n, _, _, pop_std = _masked_sums(r, v, 1)
    no_signal = (n[:, 0] < 2.0) | (pop_std[:, 0] <= config.zero_variance_tol)
    return adv, {"zero_variance_fraction": jnp.mean(no_signal.astype(jnp.float32))}


def token_advantages(rest: jnp.ndarray, confidence: jnp.ndarray, span: jnp.ndarray) -> jnp.ndarray:
    """Per-token advantages `[B, G, C]`: `confidence` `[B, G]` on the `span` `[B, G, C]` tokens,
    `rest` `[B, G]` on every other slot (padding included: the loss weights are 0 there)."""
    return jnp.where(span.astype(bool), confidence[..., None], rest[..., None]).astype(jnp.float32)

"""Training diagnostics of one GRPO step's rollout, over the `[B, G]` scores.

What they watch (the paper reports none of them during training; they make a run's calibration
visible step by step, in metrics.jsonl and TensorBoard):
- `level/<L>/confidence` beside `level/<L>/accuracy`: per difficulty level L of the questions in
  the batch, the mean stated confidence and the accuracy. A calibrated policy states about its
  accuracy on each level. Only levels present in the batch get keys (a level absent from a step
  is absent from that line of metrics.jsonl, so the curve has a gap, not a fake 0); a level
  whose samples all failed the format has a NaN confidence (null in the JSONL).
- `confidence_group_sd`: the mean over groups of the population SD of q among the group's
  format-valid samples. Near 0 means the policy states one value per question whatever its
  sample does (COREA's p_hat target pulls that way); it is what `confidence_baseline="outcome"`
  needs to see differ. Invalid samples are left out (their q was never read); groups with
  fewer than 2 valid samples are left out of the mean; NaN when no group has 2.
- `groups_all_correct`, `groups_all_wrong`: the shares of groups with every sample right, or
  every sample wrong: the groups whose p_hat is 1 or 0, where COREA's target is a sure answer.
- `batch_auroc`: AUROC of q against correctness over the batch's B * G samples, invalid
  confidences read as 0 (the deferral rule's reading, as the batch ECE does); NaN when every
  sample is right or every one wrong.

The array functions are pure `jnp` over `[B, G]`; the per-level grouping reads the level names
(strings) on the host.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from corea_jax.scoring import metrics as metrics_lib


def group_confidence_sd(confidence: jnp.ndarray, valid: jnp.ndarray) -> jnp.ndarray:
    """`[B, G]` q and format-valid flags -> scalar: the mean over groups with >= 2 valid
    samples of the population SD of their valid q (NaN when no group has 2)."""
    v = valid.astype(jnp.float32)
    q = jnp.where(valid, confidence.astype(jnp.float32), 0.0)  # no NaN of an invalid q leaks
    n = jnp.sum(v, axis=1)
    mean = jnp.sum(q * v, axis=1) / jnp.maximum(n, 1.0)
    sd = jnp.sqrt(jnp.sum(v * jnp.square(q - mean[:, None]), axis=1) / jnp.maximum(n, 1.0))
    counted = (n >= 2.0).astype(jnp.float32)
    k = jnp.sum(counted)
    return jnp.where(k > 0, jnp.sum(sd * counted) / jnp.maximum(k, 1.0), jnp.nan)


def group_outcome_shares(correct: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`[B, G]` correctness -> (share of groups all right, share of groups all wrong)."""
    c = correct.astype(bool)
    return (
        jnp.mean(jnp.all(c, axis=1).astype(jnp.float32)),
        jnp.mean(jnp.all(~c, axis=1).astype(jnp.float32)),
    )


def level_metrics(
    confidence: np.ndarray,
    correct: np.ndarray,
    valid: np.ndarray,
    levels: Sequence[str | None],
) -> dict[str, float]:
    """Per level of the B questions: "level/<L>/confidence" (mean q over the level's valid
    samples, NaN if none) and "level/<L>/accuracy" (over all its samples). `levels[b]` is
    question b's level, None for none; levels absent from the batch get no keys."""
    q, c, v = np.asarray(confidence), np.asarray(correct, bool), np.asarray(valid, bool)
    out = {}
    for name in sorted({lv for lv in levels if lv is not None}):
        rows = np.array([lv == name for lv in levels])
        qs = q[rows][v[rows]]
        out[f"level/{name}/confidence"] = float(qs.mean()) if qs.size else float("nan")
        out[f"level/{name}/accuracy"] = float(c[rows].mean())
    return out


def rollout_diagnostics(
    confidence: np.ndarray,
    correct: np.ndarray,
    valid: np.ndarray,
    levels: Sequence[str | None] | None = None,
) -> dict[str, float]:
    """Every diagnostic of the module docstring from `[B, G]` q (any value where invalid),
    correctness and format-valid flags, and the B questions' levels (None: no level keys)."""
    q = jnp.asarray(np.where(valid, confidence, 0.0), jnp.float32)
    c, v = jnp.asarray(correct, bool), jnp.asarray(valid, bool)
    all_correct, all_wrong = group_outcome_shares(c)
    out = {
        "confidence_group_sd": float(group_confidence_sd(q, v)),
        "groups_all_correct": float(all_correct),
        "groups_all_wrong": float(all_wrong),
        "batch_auroc": float(metrics_lib.auroc(q, c)),
    }
    if levels is not None:
        out.update(level_metrics(np.asarray(q), np.asarray(c), np.asarray(v), levels))
    return out

"""Accuracy, calibration and discrimination metrics (costs: `corea_jax.cascade.cost`).

The kernels are pure `jnp` and jittable (static `n_bins`, `k`, `binning`). Sample metrics take
arrays of any shape (`[B, G]`, `[N]`) and treat every entry as one sample; `mask` (same shape,
bool) leaves entries out without changing shapes. `pass_at_k` is the one metric that needs the
group axis and takes `[B, G]`. `calibration_summary` is the host-side wrapper that returns plain
Python numbers for JSON, and the reason when a metric is undefined.

Definitions and the defaults PAPER.md leaves open (all parameters):
- ECE = sum_b (n_b / N) |mean confidence_b - accuracy_b|; `n_bins=10` equal-width bins
  (PAPER.md [open]); bin b holds `edges[b] <= q < edges[b + 1]`, the last bin closed at 1.
  `binning="mass"` sorts by confidence and cuts N samples into n_bins runs whose sizes differ
  by at most one, larger runs first (as `numpy.array_split`); equal confidences may straddle a
  cut.
- AUROC of confidence as a score for "correct": the Mann-Whitney statistic with ties counted
  one half. With only one class present it is undefined: NaN, and `auroc_undefined_reason` says
  which class is missing.
- pass@k: the unbiased estimator 1 - C(n - c, k) / C(n, k) per prompt (Chen et al. 2021).
- In `calibration_summary`, an invalid confidence counts as `invalid_confidence=0.0` (PAPER.md
  [open] 4: treated as 0, i.e. deferred); None leaves those samples out instead.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from corea_jax.errors import CoreaError


def _flat(x, dtype=jnp.float32):
    return jnp.ravel(jnp.asarray(x)).astype(dtype)


def _flat_mask(mask, like):
    return jnp.ones(like.shape, bool) if mask is None else _flat(mask, bool)


# --- accuracy -------------------------------------------------------------------------------


def pass_at_1(correct, mask=None) -> jnp.ndarray:
    """Mean correctness over samples (any shape); NaN when nothing is unmasked."""
    c = _flat(correct)
    m = _flat_mask(mask, c)
    return jnp.sum(jnp.where(m, c, 0.0)) / jnp.sum(m)


def pass_at_k(correct: jnp.ndarray, k: int) -> jnp.ndarray:
    """Unbiased pass@k per prompt: `[B, G]` 0/1 -> `[B]`, needs 1 <= k <= G.

    1 - prod_{j<k} (n - c - j) / (n - j), the product form of 1 - C(n-c, k) / C(n, k); a
    factor turns 0 once fewer than k wrong samples are left, making pass@k exactly 1.
    """
    c = jnp.asarray(correct).astype(jnp.float32)
    n = c.shape[1]
    if not 1 <= k <= n:
        raise CoreaError(f"pass@k: k={k} must be between 1 and the group size {n}")
    wrong = n - jnp.sum(c, axis=1, keepdims=True)  # [B, 1]
    j = jnp.arange(k, dtype=jnp.float32)  # [k]
    factors = jnp.maximum(wrong - j, 0.0) / (n - j)  # [B, k]
    return 1.0 - jnp.prod(factors, axis=1)


# --- binning --------------------------------------------------------------------------------


def bin_edges(n_bins: int = 10) -> jnp.ndarray:
    """`[n_bins + 1]` equal-width edges over [0, 1], each the float32 nearest k / n_bins.

    Computed in float64 and rounded once, so an edge equals a stated confidence of the same
    decimal (parsed and cast to float32 the same way): 0.9 lands in [0.9, 1.0], not in
    [0.8, 0.9) as it did with float32 `linspace` (whose 0.9 edge is 0.90000004).
    """
    return jnp.asarray(np.arange(n_bins + 1, dtype=np.float64) / n_bins, jnp.float32)


def equal_width_bins(q: jnp.ndarray, m: jnp.ndarray, n_bins: int) -> jnp.ndarray:
    """`[N]` bin index of each confidence; masked entries get `n_bins` (a dropped bin)."""
    idx = jnp.searchsorted(bin_edges(n_bins)[1:-1], q, side="right")
    return jnp.where(m, jnp.clip(idx, 0, n_bins - 1), n_bins)


def equal_mass_bins(q: jnp.ndarray, m: jnp.ndarray, n_bins: int) -> jnp.ndarray:
    """`[N]` bin index by confidence rank: n_bins runs of near-equal size (see module doc)."""
    keys = jnp.where(m, q, jnp.inf)
    order = jnp.argsort(keys, stable=True)
    rank = jnp.zeros(q.shape, jnp.int32).at[order].set(jnp.arange(q.shape[0], dtype=jnp.int32))
    n = jnp.sum(m.astype(jnp.int32))
    size, extra = n // n_bins, n % n_bins  # the first `extra` runs hold size + 1
    big = extra * (size + 1)
    idx = jnp.where(rank < big, rank // (size + 1), extra + (rank - big) // jnp.maximum(size, 1))
    return jnp.where(m, jnp.clip(idx, 0, n_bins - 1), n_bins)


BINNINGS: dict[str, Callable[[jnp.ndarray, jnp.ndarray, int], jnp.ndarray]] = {
    "width": equal_width_bins,
    "mass": equal_mass_bins,
}


def _bin_sums(confidence, correct, mask, n_bins, binning):
    if binning not in BINNINGS:
        raise CoreaError(f"binning={binning!r}: expected one of {sorted(BINNINGS)}")
    if n_bins < 1:
        raise CoreaError(f"n_bins={n_bins}: must be >= 1")
    q, c = _flat(confidence), _flat(correct)
    m = _flat_mask(mask, q)
    q = jnp.where(m, q, 0.0)
    idx = BINNINGS[binning](q, m, n_bins)
    seg = lambda x: jnp.zeros(n_bins + 1, jnp.float32).at[idx].add(x)[:n_bins]
    return (
        q,
        m,
        idx,
        seg(m.astype(jnp.float32)),
        seg(jnp.where(m, q, 0.0)),
        seg(jnp.where(m, c, 0.0)),
    )


def reliability_bins(
    confidence, correct, n_bins: int = 10, binning: str = "width", mask=None
) -> dict[str, jnp.ndarray]:
    """Reliability-diagram data, each `[n_bins]`: "lower"/"upper" (bin range: the edges for
    equal width, the smallest/largest confidence inside for equal mass), "count",
    "confidence" (mean stated confidence) and "accuracy"; NaN in empty bins."""
    q, m, idx, count, conf_sum, acc_sum = _bin_sums(confidence, correct, mask, n_bins, binning)
    empty = count == 0
    safe = jnp.where(empty, 1.0, count)
    if binning == "width":
        edges = bin_edges(n_bins)
        lower, upper = edges[:-1], edges[1:]
    else:
        lower = jnp.full(n_bins + 1, jnp.inf).at[idx].min(jnp.where(m, q, jnp.inf))[:n_bins]
        upper = jnp.full(n_bins + 1, -jnp.inf).at[idx].max(jnp.where(m, q, -jnp.inf))[:n_bins]
        lower, upper = jnp.where(empty, jnp.nan, lower), jnp.where(empty, jnp.nan, upper)
    return {
        "lower": lower,
        "upper": upper,
        "count": count,
        "confidence": jnp.where(empty, jnp.nan, conf_sum / safe),
        "accuracy": jnp.where(empty, jnp.nan, acc_sum / safe),
    }


def expected_calibration_error(
    confidence, correct, n_bins: int = 10, binning: str = "width", mask=None
) -> jnp.ndarray:
    """ECE, a scalar in [0, 1]; NaN when nothing is unmasked."""
    _, m, _, _, conf_sum, acc_sum = _bin_sums(confidence, correct, mask, n_bins, binning)
    return jnp.sum(jnp.abs(conf_sum - acc_sum)) / jnp.sum(m)


def brier_score(confidence, correct, mask=None) -> jnp.ndarray:
    """Mean (q - c)^2 over samples; NaN when nothing is unmasked."""
    q, c = _flat(confidence), _flat(correct)
    m = _flat_mask(mask, q)
    return jnp.sum(jnp.where(m, jnp.square(q - c), 0.0)) / jnp.sum(m)


def confidence_histogram(confidence, n_bins: int = 10, mask=None) -> jnp.ndarray:
    """`[n_bins]` counts of confidences in equal-width bins over [0, 1] (edges: `bin_edges`)."""
    q = _flat(confidence)
    m = _flat_mask(mask, q)
    idx = equal_width_bins(jnp.where(m, q, 0.0), m, n_bins)
    return jnp.zeros(n_bins + 1, jnp.int32).at[idx].add(1)[:n_bins]


# --- discrimination -------------------------------------------------------------------------


def auroc(confidence, correct, mask=None) -> jnp.ndarray:
    """Area under the ROC curve of confidence as a detector of correct answers, scalar.

    P(q_pos > q_neg) + P(q_pos == q_neg) / 2 over all (correct, wrong) pairs, in
    O(N log N) by sorting the wrong answers' confidences. NaN when a class is missing.
    """
    q, c = _flat(confidence), _flat(correct, bool)
    m = _flat_mask(mask, q)
    pos, neg = m & c, m & ~c
    neg_sorted = jnp.sort(jnp.where(neg, q, jnp.inf))
    below = jnp.searchsorted(neg_sorted, q, side="left").astype(jnp.float32)
    tied = jnp.searchsorted(neg_sorted, q, side="right").astype(jnp.float32) - below
    wins = jnp.sum(jnp.where(pos, below + 0.5 * tied, 0.0))
    n_pos, n_neg = jnp.sum(pos), jnp.sum(neg)
    pairs = (n_pos * n_neg).astype(jnp.float32)
    return jnp.where(pairs > 0, wins / jnp.maximum(pairs, 1.0), jnp.nan)


def auroc_undefined_reason(correct, mask=None) -> str | None:
    """Why AUROC is NaN for these labels (host side), or None when it is defined."""
    c = np.ravel(np.asarray(correct)).astype(bool)
    m = np.ones_like(c) if mask is None else np.ravel(np.asarray(mask)).astype(bool)
    n_pos, n_neg = int(np.sum(c & m)), int(np.sum(~c & m))
    if n_pos and n_neg:
        return None
    if not n_pos and not n_neg:
        return "no samples"
    return "only one class: every answer is " + ("correct" if n_pos else "wrong")


# --- summary for reports --------------------------------------------------------------------


def _num(x) -> float | None:
    """A JSON number (float32 noise rounded off), or None for NaN."""
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


@functools.partial(jax.jit, static_argnames=("n_bins", "histogram_bins"))
def _summary_arrays(q, c, mask, n_bins: int, histogram_bins: int) -> dict[str, jnp.ndarray]:
    """Every array `calibration_summary` reports, in one compiled call."""
    return {
        "pass@1": pass_at_1(c),
        "mean_confidence": jnp.sum(jnp.where(mask, q, 0.0)) / jnp.sum(mask),
        "ece": expected_calibration_error(q, c, n_bins, "width", mask),
        "ece_equal_mass": expected_calibration_error(q, c, n_bins, "mass", mask),
        "brier": brier_score(q, c, mask),
        "auroc": auroc(q, c, mask),
        "reliability": reliability_bins(q, c, n_bins, "width", mask),
        "histogram": confidence_histogram(q, histogram_bins, mask),
    }


def calibration_summary(
    correct,
    confidence,
    confidence_valid=None,
    format_ok=None,
    n_bins: int = 10,
    histogram_bins: int = 10,
    invalid_confidence: float | None = 0.0,
) -> dict:
    """Every sample metric as plain Python values (JSON-ready; an undefined value is None and
    its reason is given). Arrays: any shape, one entry per sample."""
    c = np.ravel(np.asarray(correct)).astype(bool)
    q = np.ravel(np.asarray(confidence, dtype=np.float32))
    valid = np.ones_like(c) if confidence_valid is None else np.ravel(confidence_valid).astype(bool)
    if invalid_confidence is None:
        mask = valid
    else:
        mask = np.ones_like(c)
        q = np.where(valid, q, np.float32(invalid_confidence))
    q = np.where(mask, q, 0.0).astype(np.float32)
    if c.size == 0:
        raise CoreaError("calibration_summary: no samples")
    a = _summary_arrays(q, c, mask, n_bins=n_bins, histogram_bins=histogram_bins)
    bins = a["reliability"]
    return {
        "n": int(c.size),
        "pass@1": _num(a["pass@1"]),
        "format_rate": None if format_ok is None else _num(np.mean(np.ravel(format_ok))),
        "confidence_valid_rate": _num(np.mean(valid)),
        "invalid_confidence": invalid_confidence,
        "n_calibration": int(np.sum(mask)),
        "mean_confidence": _num(a["mean_confidence"]),
        "ece": _num(a["ece"]),
        "ece_equal_mass": _num(a["ece_equal_mass"]),
        "brier": _num(a["brier"]),
        "auroc": _num(a["auroc"]),
        "auroc_reason": auroc_undefined_reason(c, mask),
        "reliability": [{key: _num(bins[key][b]) for key in bins} for b in range(n_bins)],
        "confidence_histogram": {
            "edges": [round(float(e), 6) for e in np.asarray(bin_edges(histogram_bins))],
            "counts": [int(n) for n in np.asarray(a["histogram"])],
        },
    }

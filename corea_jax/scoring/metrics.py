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
- `binning="mass_tied"` (`equal_mass_ece`): the same runs, but a block of equal confidences is
  never split: it goes whole into the run that holds its middle rank ((first + last) // 2), so
  cuts move to a block edge and a bin may be larger, smaller or empty. Without ties it is
  exactly `"mass"`. Stated confidences are coarse (0.8, 0.9, ...), where `"mass"` would put
  copies of one value in two bins and score a difference between them that no threshold sees.
- pass@k: the unbiased estimator 1 - C(n - c, k) / C(n, k) per prompt (Chen et al. 2021).
- mean@k: `[Q, k]` samples per question, the mean over questions of each question's mean.
- Risk-coverage (selective prediction, Geifman & El-Yaniv 2017): answer the most confident
  first; the risk at coverage k / N is the error rate of the k answered. The curve has one
  point per distinct confidence (a threshold admits equal confidences together). AURC =
  (1 / N) sum_{k=1..N} risk(k / N), where inside a block of m tied samples, f of them wrong
  and e errors before it, the j-th admitted adds f / m errors: the expectation over a random
  order of the tie (Geifman & El-Yaniv's definition, ties averaged). Oracle AURC ranks every
  correct sample first; excess AURC = AURC - oracle AURC removes AURC's dependence on
  accuracy (0 for a perfect ranking, 0 when all right or all wrong).
- Within-group AUROC: the Mann-Whitney statistic over (correct, wrong) pairs *from the same
  group* (difficulty level, subject), pooled over groups by pair count. A confidence that only
  knows the group (its level's accuracy) scores 0.5 here and can still score high pooled AUROC;
  above 0.5 means it ranks questions within a level (issue 16: "does the confidence track the
  question or only its level?").
- In `calibration_summary`, an invalid confidence counts as `invalid_confidence=0.0` (PAPER.md
  [open] 4: treated as 0, i.e. deferred); None leaves those samples out instead
  (`per_group_calibration` the same). The kernels take `mask`: an unmasked NaN confidence
  makes ECE, Brier, AURC and within-group AUROC NaN (never a silently ranked NaN), and makes
  `risk_coverage` raise.
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


def mean_at_k(correct) -> jnp.ndarray:
    """mean@k of `[Q, k]` 0/1 (k samples of each question), a scalar.

    The mean over questions of the per-question accuracy, i.e. pass@1 averaged over k samples:
    lower variance than one sample, the same expectation. Its samples are not independent
    (they share the question), so its interval must resample questions with their k samples
    together: `stats.bootstrap(mean_at_k, correct)` does (it resamples rows of `[Q, k]`).
    """
    c = jnp.asarray(correct).astype(jnp.float32)
    if c.ndim != 2:
        raise CoreaError(f"mean@k: correct must be [Q, k], got shape {c.shape}")
    return jnp.mean(jnp.mean(c, axis=1))


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


def _run_of_rank(rank: jnp.ndarray, m: jnp.ndarray, n_bins: int) -> jnp.ndarray:
    """`[N]` run index of each rank when the n unmasked samples are cut into n_bins runs whose
    sizes differ by at most one, larger first (as `numpy.array_split`); masked -> n_bins."""
    n = jnp.sum(m.astype(jnp.int32))
    size, extra = n // n_bins, n % n_bins  # the first `extra` runs hold size + 1
    big = extra * (size + 1)
    idx = jnp.where(rank < big, rank // (size + 1), extra + (rank - big) // jnp.maximum(size, 1))
    return jnp.where(m, jnp.clip(idx, 0, n_bins - 1), n_bins)


def equal_mass_bins(q: jnp.ndarray, m: jnp.ndarray, n_bins: int) -> jnp.ndarray:
    """`[N]` bin index by confidence rank: n_bins runs of near-equal size (see module doc)."""
    keys = jnp.where(m, q, jnp.inf)
    order = jnp.argsort(keys, stable=True)
    rank = jnp.zeros(q.shape, jnp.int32).at[order].set(jnp.arange(q.shape[0], dtype=jnp.int32))
    return _run_of_rank(rank, m, n_bins)


def equal_mass_tied_bins(q: jnp.ndarray, m: jnp.ndarray, n_bins: int) -> jnp.ndarray:
    """`[N]` bin index as `equal_mass_bins`, but equal confidences share one bin: a tie block
    takes the run of its middle rank (module doc)."""
    keys = jnp.where(m, q, jnp.inf)
    ranked = jnp.sort(keys)
    first = jnp.searchsorted(ranked, keys, side="left")
    last = jnp.searchsorted(ranked, keys, side="right") - 1
    return _run_of_rank(((first + last) // 2).astype(jnp.int32), m, n_bins)


BINNINGS: dict[str, Callable[[jnp.ndarray, jnp.ndarray, int], jnp.ndarray]] = {
    "width": equal_width_bins,
    "mass": equal_mass_bins,
    "mass_tied": equal_mass_tied_bins,
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


def equal_mass_ece(confidence, correct, n_bins: int = 15, mask=None) -> jnp.ndarray:
    """ECE over n_bins confidence quantiles with ties kept together (`binning="mass_tied"`):
    sum_b (n_b / N) |mean confidence_b - accuracy_b|, a scalar; NaN when nothing is unmasked.

    Each bin holds about N / n_bins samples; a block of equal confidences is never split, so a
    bin next to a large tie may hold more or fewer (or none, weighing 0). Not the same as
    `calibration_summary`'s "ece_equal_mass" (`binning="mass"`, which splits ties).
    """
    return expected_calibration_error(confidence, correct, n_bins, "mass_tied", mask)


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


def _nan_if_unmasked_nan(q, m, value):
    """NaN when an unmasked confidence is NaN: the sorts below would place it arbitrarily."""
    return jnp.where(jnp.any(m & jnp.isnan(q)), jnp.nan, value)


def within_group_auroc(confidence, correct, group, mask=None) -> jnp.ndarray:
    """AUROC over (correct, wrong) pairs from the same group only (module doc), a scalar.

    Args:
      confidence, correct: `[N]` (any shape, flattened).
      group: `[N]` integer group ids (`per_group_calibration` maps labels to ids).
    NaN when no group holds both a correct and a wrong sample. O(N log N): one sort by
    (group, confidence), then per sample the wrong answers of its group below / tied with it.
    """
    q, c = _flat(confidence), _flat(correct, bool)
    g = _flat(group, jnp.int32)
    m = _flat_mask(mask, q)
    n = q.shape[0]
    order = jnp.lexsort((q, g))  # group first, then confidence
    gs, qs = g[order], q[order]
    pos, neg = (m & c)[order], (m & ~c)[order]
    i = jnp.arange(n)
    true = jnp.ones(1, bool)
    new_group = jnp.concatenate([true, gs[1:] != gs[:-1]])  # [N] first of its group
    new_block = new_group | jnp.concatenate([true, qs[1:] != qs[:-1]])  # first of its tie
    group_start = jax.lax.cummax(jnp.where(new_group, i, 0))
    block_start = jax.lax.cummax(jnp.where(new_block, i, 0))
    end = (
        lambda first: jax.lax.cummin(  # noqa: E731  one past the last of the run
            jnp.where(jnp.concatenate([first[1:], true]), i + 1, n), reverse=True
        )
    )
    wrong = jnp.concatenate([jnp.zeros(1, jnp.float32), jnp.cumsum(neg.astype(jnp.float32))])
    below = wrong[block_start] - wrong[group_start]
    tied = wrong[end(new_block)] - wrong[block_start]
    wins = jnp.sum(jnp.where(pos, below + 0.5 * tied, 0.0))
    pairs = jnp.sum(jnp.where(pos, wrong[end(new_group)] - wrong[group_start], 0.0))
    value = jnp.where(pairs > 0, wins / jnp.maximum(pairs, 1.0), jnp.nan)
    return _nan_if_unmasked_nan(q, m, value)


# --- selective prediction -------------------------------------------------------------------


def _risk_by_coverage(confidence, correct, mask):
    """`[N]` risk when the k = 1..N most confident are answered (ties averaged, module doc),
    valid for k <= n; the `[N]` validity mask; n; the `[N]` flat confidences and mask."""
    q, c = _flat(confidence), _flat(correct, bool)
    m = _flat_mask(mask, q)
    keys = jnp.where(m, -q, jnp.inf)  # most confident first, masked last
    order = jnp.argsort(keys, stable=True)
    ranked = keys[order]
    wrong = jnp.where(m & ~c, 1.0, 0.0)[order]
    errors = jnp.concatenate([jnp.zeros(1, jnp.float32), jnp.cumsum(wrong)])  # [N + 1]
    first = jnp.searchsorted(ranked, ranked, side="left")  # [N] tie block [first, past)
    past = jnp.searchsorted(ranked, ranked, side="right")
    k = jnp.arange(1, q.shape[0] + 1, dtype=jnp.float32)
    in_block = (errors[past] - errors[first]) / (past - first)
    risk = (errors[first] + (k - first) * in_block) / k
    n = jnp.sum(m)
    return risk, k <= n, n, q, m


def aurc(confidence, correct, mask=None) -> jnp.ndarray:
    """Area under the risk-coverage curve, a scalar in [0, 1] (lower is better; module doc):
    the mean over k = 1..N of the error rate of the k most confident, ties averaged.
    NaN when nothing is unmasked."""
    risk, valid, n, q, m = _risk_by_coverage(confidence, correct, mask)
    return _nan_if_unmasked_nan(q, m, jnp.sum(jnp.where(valid, risk, 0.0)) / n)


def oracle_aurc(correct, mask=None) -> jnp.ndarray:
    """AURC of the ranking that puts every correct sample first, a scalar: with r of n
    correct, (1 / n) sum_{k=r+1..n} (k - r) / k. The least AURC any confidence can reach."""
    c = _flat(correct, bool)
    m = _flat_mask(mask, c)
    n, r = jnp.sum(m), jnp.sum(m & c)
    k = jnp.arange(1, c.shape[0] + 1, dtype=jnp.float32)
    risk = jnp.where(k > r, (k - r) / k, 0.0)
    return jnp.sum(jnp.where(k <= n, risk, 0.0)) / n


def excess_aurc(confidence, correct, mask=None) -> jnp.ndarray:
    """AURC - oracle AURC, a scalar >= 0: the part of AURC due to ranking, not accuracy."""
    return aurc(confidence, correct, mask) - oracle_aurc(correct, mask)


def risk_coverage(confidence, correct, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """The risk-coverage curve (host side: its length depends on the data).

    Returns `(coverage [P], risk [P])`, one point per distinct unmasked confidence (P of
    them), from the highest threshold to the lowest: answering every sample with confidence
    >= the threshold covers `coverage` of the N unmasked samples with error rate `risk`.
    Tied samples enter together, so a tie is one point; the last point is (1, 1 - accuracy).
    Empty arrays when nothing is unmasked; NaN confidences must be masked (CoreaError).
    """
    q = np.ravel(np.asarray(confidence, np.float32))
    c = np.ravel(np.asarray(correct)).astype(bool)
    m = np.ones(q.shape, bool) if mask is None else np.ravel(np.asarray(mask)).astype(bool)
    q, c = q[m], c[m]
    if np.isnan(q).any():
        raise CoreaError("risk_coverage: confidence has NaN entries; mask them or set a value")
    order = np.argsort(-q, kind="stable")
    q, wrong = q[order], ~c[order]
    last = np.flatnonzero(np.append(q[1:] != q[:-1], True)) if q.size else np.zeros(0, int)
    answered = last + 1
    return answered / max(q.size, 1), np.cumsum(wrong)[last] / answered


# --- summary for reports --------------------------------------------------------------------


def _num(x) -> float | None:
    """A JSON number (float32 noise rounded off), or None for NaN."""
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


def _host_inputs(correct, confidence, confidence_valid, invalid_confidence):
    """Flat `correct`, `confidence`, `valid` and `mask` (`[N]` each) for the host summaries:
    an invalid confidence becomes `invalid_confidence`, or with None is masked out."""
    c = np.ravel(np.asarray(correct)).astype(bool)
    q = np.ravel(np.asarray(confidence, dtype=np.float32))
    valid = np.ones_like(c) if confidence_valid is None else np.ravel(confidence_valid).astype(bool)
    if invalid_confidence is None:
        mask = valid
    else:
        mask = np.ones_like(c)
        q = np.where(valid, q, np.float32(invalid_confidence))
    return c, np.where(mask, q, 0.0).astype(np.float32), valid, mask


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
    c, q, valid, mask = _host_inputs(correct, confidence, confidence_valid, invalid_confidence)
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


@functools.partial(jax.jit, static_argnames="n_bins")
def _group_arrays(q, c, group_masks, n_bins: int) -> dict[str, jnp.ndarray]:
    """`[G]` arrays of every per-group figure, `group_masks` `[G, N]`, in one compiled call."""

    def one(m):
        return {
            "mean_confidence": jnp.sum(jnp.where(m, q, 0.0)) / jnp.sum(m),
            "ece": expected_calibration_error(q, c, n_bins, "width", m),
            "auroc": auroc(q, c, m),
        }

    return jax.vmap(one)(group_masks)


def _json_label(label):
    return label.item() if isinstance(label, np.generic) else label


def per_group_calibration(
    confidence,
    correct,
    groups,
    n_bins: int = 10,
    confidence_valid=None,
    invalid_confidence: float | None = 0.0,
) -> dict:
    """Calibration within each group (difficulty level, subject) and the within-group AUROC.

    Args:
      confidence, correct: `[N]` (any shape, flattened), one entry per sample.
      groups: `[N]` hashable labels (ints, strings); NumPy scalars become Python ones.
      n_bins: equal-width bins of each group's ECE.
      confidence_valid, invalid_confidence: as in `calibration_summary`.
    Returns (plain Python, JSON-ready up to the label types):
      "groups": {label: {"n", "n_calibration", "accuracy", "mean_confidence", "ece", "auroc",
        "auroc_reason"}}, labels sorted (first-appearance order when they do not sort); a
        group's "auroc" is None when it is all right or all wrong (the reason says which);
      "auroc": pooled over all samples; "within_group_auroc": over same-group pairs only
        (module doc), None when no group has both classes; "within_group_pairs": that count.
    """
    c, q, _, mask = _host_inputs(correct, confidence, confidence_valid, invalid_confidence)
    flat = np.ravel(groups) if isinstance(groups, np.ndarray) else groups  # tuples stay labels
    labels = [_json_label(x) for x in flat]
    if len(labels) != c.size or c.size == 0:
        raise CoreaError(f"groups: need one label per sample ({c.size}), got {len(labels)}")
    ids: dict = {}
    group = np.array([ids.setdefault(x, len(ids)) for x in labels], np.int32)
    try:
        ordered = sorted(ids)
    except TypeError:
        ordered = list(ids)
    members = group[None, :] == np.array([ids[x] for x in ordered], np.int32)[:, None]  # [G, N]
    a = _group_arrays(q, c, members & mask[None, :], n_bins=n_bins)
    out = {}
    for k, label in enumerate(ordered):
        m = members[k] & mask
        out[label] = {
            "n": int(members[k].sum()),
            "n_calibration": int(m.sum()),
            "accuracy": _num(np.mean(c[members[k]])),
            "mean_confidence": _num(a["mean_confidence"][k]),
            "ece": _num(a["ece"][k]),
            "auroc": _num(a["auroc"][k]),
            "auroc_reason": auroc_undefined_reason(c, m),
        }
    pos, neg = c & mask, ~c & mask
    pairs = sum(int(np.sum(pos[g])) * int(np.sum(neg[g])) for g in members)
    return {
        "groups": out,
        "auroc": _num(auroc(q, c, mask)),
        "within_group_auroc": _num(within_group_auroc(q, c, group, mask)),
        "within_group_pairs": pairs,
    }

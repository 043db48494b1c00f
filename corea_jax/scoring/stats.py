"""Uncertainty of every reported figure: bootstrap intervals over questions (and seeds).

A statistic is any function of per-question arrays (`stat(*arrays) -> float`): pass@1 of a
`correct [Q]` array, ECE of `(confidence [Q], correct [Q])`, a cascade's cost saving at a fixed
tau, ... `bootstrap` resamples the questions with replacement and reports the percentile
interval; `paired_difference` resamples the *same* questions for two systems, so what they
share (the questions' difficulty) cancels and the interval of "A - B" is as narrow as the data
allow. With several training seeds the arrays are `[S, Q]` (seed x question: the same
questions answered by each seed's model) and both axes are resampled (seeds first, then
questions, the two-level bootstrap), so the interval covers seed-to-seed variation as well.
`bootstrap` hands the statistic the resampled `[S, Q]` arrays whole (np.mean pools them);
`seed_question_bootstrap` instead computes the statistic once per seed and averages over the
resampled seeds, which is what a table of per-seed ECEs or AURCs reports (module note below).

Samples of one question move together. An array `[Q, k]` (k samples per question, issue 16's
matched decoding) is resampled by rows in `bootstrap`, `paired_difference` and
`seed_question_bootstrap`: a cluster bootstrap over questions, so `stats.bootstrap(mean_at_k,
correct_qk)` is the interval of mean@k over Q questions, not over Q * k independent samples.
`calibration_intervals` takes flat samples with `clusters` (question ids), or `[Q, k]` arrays.

Seeds and questions (`seed_question_bootstrap`): S GRPO seeds evaluated on the *same* Q
questions. Each replicate draws Q question indices once, shared by every seed (the questions'
difficulty is common to the seeds, and resampling it separately per seed would count it S
times), and S seeds with replacement; the replicate is the mean over the drawn seeds of the
statistic on that seed's resampled questions. With one seed it is exactly `bootstrap`.
`mean_sd` gives the plain mean and sample SD across seeds for seed tables.

`verdict` turns an interval and a target region into "met" (the whole interval inside),
"not met" (the whole interval outside) or "not resolved" (it straddles a boundary): a claim
is never decided on a point estimate.

ECE is biased upward by resampling (a resample repeats questions, so its bins hold fewer distinct
ones and look noisier), and for a well-calibrated system its whole interval can sit above the
point estimate: read it as the spread of ECE at this sample size, and compare two systems by the
paired difference of their ECEs, where that bias largely cancels.

Defaults [open: standard choices]: 2,000 replicates, 95% percentile intervals, seed 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from corea_jax.errors import CoreaError

N_BOOT = 2000
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval at `level`."""

    point: float
    low: float
    high: float
    level: float = LEVEL

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def format(self, scale: float = 1.0, digits: int = 3, signed: bool = False) -> str:
        """`0.512 [0.480, 0.545]` (times `scale`, e.g. 100 for percentage points)."""
        sign = "+" if signed else ""
        f = lambda x: "n/a" if not math.isfinite(x) else f"{x * scale:{sign}.{digits}f}"  # noqa: E731
        return f"{f(self.point)} [{f(self.low)}, {f(self.high)}]"


def _indices(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    return rng.integers(0, n, size=(n_boot, n))


def _resample(arrays: Sequence[np.ndarray], seeds: np.ndarray | None, questions: np.ndarray):
    if seeds is None:
        return [a[questions] for a in arrays]
    return [a[seeds][:, questions] for a in arrays]


def _replicates(
    stats: Sequence[Callable[..., float]],
    groups: Sequence[Sequence[np.ndarray]],
    n_boot: int,
    seed: int,
    over_seeds: bool,
) -> np.ndarray:
    """[n_boot, len(stats)]: each statistic on its own arrays, all resampled alike."""
    first = groups[0][0]
    n_q = first.shape[1] if over_seeds else first.shape[0]
    rng = np.random.default_rng(seed)
    q_idx = _indices(rng, n_q, n_boot)
    s_idx = _indices(rng, first.shape[0], n_boot) if over_seeds else None
    out = np.empty((n_boot, len(stats)))
    for b in range(n_boot):
        s = None if s_idx is None else s_idx[b]
        for k, (stat, arrays) in enumerate(zip(stats, groups, strict=True)):
            out[b, k] = stat(*_resample(arrays, s, q_idx[b]))
    return out


def _check(arrays: Sequence[np.ndarray], over_seeds: bool) -> list[np.ndarray]:
    arrays = [np.asarray(a) for a in arrays]
    axis = 1 if over_seeds else 0
    sizes = {a.shape[: axis + 1] for a in arrays}
    if len(sizes) != 1 or any(a.ndim <= axis for a in arrays):
        raise ValueError(
            f"arrays must share their leading {'[S, Q]' if over_seeds else '[Q]'} axes"
        )
    return arrays


def _interval(point: float, reps: np.ndarray, level: float) -> Interval:
    """The percentile interval of the replicates (NaN replicates dropped)."""
    reps = reps[np.isfinite(reps)]
    if not reps.size or not math.isfinite(point):
        return Interval(point, math.nan, math.nan, level)
    tail = (1 - level) / 2
    low, high = np.quantile(reps, [tail, 1 - tail])
    return Interval(float(point), float(low), float(high), level)


def bootstrap(
    stat: Callable[..., float],
    *arrays,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
    over_seeds: bool = False,
) -> Interval:
    """`stat(*arrays)` with its percentile interval over resampled questions (and seeds).

    Args:
      stat: a function of the arrays returning a float (NaN replicates are dropped).
      arrays: `[Q, ...]` arrays, or `[S, Q, ...]` with `over_seeds`.
      over_seeds: resample the leading seed axis too (two-level bootstrap).
    """
    arrays = _check(arrays, over_seeds)
    reps = _replicates([stat], [arrays], n_boot, seed, over_seeds)[:, 0]
    return _interval(stat(*arrays), reps, level)


def paired_difference(
    stat: Callable[..., float],
    a: Sequence,
    b: Sequence,
    *,
    stat_b: Callable[..., float] | None = None,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
    over_seeds: bool = False,
) -> Interval:
    """`stat(*a) - stat_b(*b)` (stat_b defaults to stat) with questions resampled together.

    `a` and `b` are tuples of arrays over the same questions in the same order (and, with
    `over_seeds`, the same number of seeds: seed i of A is paired with seed i of B, which
    matters only when they share a warm start and data order per seed).
    """
    stat_b = stat if stat_b is None else stat_b
    a, b = _check(a, over_seeds), _check(b, over_seeds)
    if a[0].shape[: 2 if over_seeds else 1] != b[0].shape[: 2 if over_seeds else 1]:
        raise ValueError("paired_difference: A and B must cover the same questions (and seeds)")
    reps = _replicates([stat, stat_b], [a, b], n_boot, seed, over_seeds)
    return _interval(stat(*a) - stat_b(*b), reps[:, 0] - reps[:, 1], level)


def seed_question_bootstrap(
    stat: Callable[..., float],
    arrays_per_seed: Sequence[Sequence],
    *,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> Interval:
    """The mean over seeds of `stat(*arrays)`, with its interval over seeds and questions.

    Args:
      stat: a function of one seed's arrays returning a float (NaN replicates are dropped).
      arrays_per_seed: one tuple of arrays per seed, each `[Q, ...]` over the same Q questions
        in the same order (`[Q, k]` rows move together).
    Returns the point mean_s stat(*arrays_s) and the percentile interval of replicates that
    resample the questions once (shared by all seeds) and the seeds with replacement (module
    doc). With one seed, identical to `bootstrap(stat, *arrays_per_seed[0], seed=seed)`.
    """
    per_seed = [[np.asarray(a) for a in arrays] for arrays in arrays_per_seed]
    if not per_seed:
        raise CoreaError("arrays_per_seed: no seeds")
    shapes = {(len(arrays), *(a.shape[:1] for a in arrays)) for arrays in per_seed}
    if len(shapes) != 1 or any(a.ndim == 0 for arrays in per_seed for a in arrays):
        raise CoreaError("arrays_per_seed: every seed needs the same arrays over the same [Q]")
    n_s, n_q = len(per_seed), per_seed[0][0].shape[0]
    rng = np.random.default_rng(seed)
    q_idx = _indices(rng, n_q, n_boot)  # drawn first, as `bootstrap` draws it
    s_idx = _indices(rng, n_s, n_boot)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        counts = np.bincount(s_idx[b], minlength=n_s)
        drawn = np.flatnonzero(counts)
        values = [stat(*(a[q_idx[b]] for a in per_seed[s])) for s in drawn]
        reps[b] = np.dot(counts[drawn], values) / n_s
    point = float(np.mean([stat(*arrays) for arrays in per_seed]))
    return _interval(point, reps, level)


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample SD (ddof 1) of per-seed values `[S]`, for "mean ± SD" seed tables.

    The SD describes the seeds' spread, not the uncertainty of the mean (that is
    `seed_question_bootstrap`'s interval); NaN with a single seed; NaN values propagate.
    """
    v = np.ravel(np.asarray(values, np.float64))
    if v.size == 0:
        raise CoreaError("mean_sd: values is empty")
    return float(np.mean(v)), float(np.std(v, ddof=1)) if v.size > 1 else math.nan


def verdict(interval: Interval, low: float = -math.inf, high: float = math.inf) -> str:
    """ "met" when the whole interval lies in [low, high], "not met" when it lies wholly
    outside, "not resolved" when it straddles a boundary (or is undefined)."""
    if not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return "not resolved"
    if low <= interval.low and interval.high <= high:
        return "met"
    if interval.high < low or interval.low > high:
        return "not met"
    return "not resolved"


def _cluster_rows(clusters: np.ndarray | None, n_rows: int) -> np.ndarray | None:
    """`[Q, k]` row indices per question when every question has k rows, else None."""
    if clusters is None:
        return None
    clusters = np.asarray(clusters)
    _, inverse, counts = np.unique(clusters, return_inverse=True, return_counts=True)
    if len(set(counts.tolist())) != 1:
        return None
    order = np.argsort(inverse, kind="stable")
    return order.reshape(len(counts), counts[0])


def calibration_intervals(
    correct,
    confidence,
    mask=None,
    *,
    clusters=None,
    n_bins: int = 10,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
    selective: bool = False,
    mass_bins: int = 15,
) -> dict[str, Interval]:
    """pass@1, ECE, Brier and AUROC of `[R]` samples, each with its bootstrap interval.

    Resampling is over *questions*: with `clusters` (`[R]` question ids, every question the
    same number of samples) the rows of one question move together; without, each row is a
    question, except that `[Q, k]` arrays (k samples per question) move by rows. The
    statistics are `corea_jax.scoring.metrics`'s, vmapped over all replicates in one compiled
    call (a CLI report pays well under a second for 2,000 replicates).

    With `selective`, also "aurc", "excess_aurc" and "equal_mass_ece" (`mass_bins` bins, ties
    kept together), from the same replicates; the four keys above are unchanged either way.
    AURC and equal-mass ECE take the masked-in samples, as ECE does.
    """
    import jax
    import jax.numpy as jnp

    from corea_jax.scoring import metrics

    c = np.ravel(np.asarray(correct)).astype(bool)
    q = np.ravel(np.asarray(confidence, np.float32))
    m = np.ones_like(c) if mask is None else np.ravel(np.asarray(mask)).astype(bool)
    rows = _cluster_rows(clusters, c.size)
    if rows is None and clusters is None and np.ndim(correct) == 2:
        rows = np.arange(c.size).reshape(np.shape(correct))
    if rows is None:
        rows = np.arange(c.size)[:, None]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, rows.shape[0], size=(n_boot, rows.shape[0]))
    index = rows[picks].reshape(n_boot, -1)  # [n_boot, R]

    def stats(idx):
        cc, qq, mm = c_[idx], q_[idx], m_[idx]
        out = (
            metrics.pass_at_1(cc),
            metrics.expected_calibration_error(qq, cc, n_bins, "width", mm),
            metrics.brier_score(qq, cc, mm),
            metrics.auroc(qq, cc, mm),
        )
        if not selective:
            return out
        return out + (
            metrics.aurc(qq, cc, mm),
            metrics.excess_aurc(qq, cc, mm),
            metrics.equal_mass_ece(qq, cc, mass_bins, mm),
        )

    c_, q_, m_ = jnp.asarray(c), jnp.asarray(q), jnp.asarray(m)
    point = [float(x) for x in jax.jit(stats)(jnp.arange(c.size))]
    reps = np.stack([np.asarray(x) for x in jax.jit(jax.vmap(stats))(jnp.asarray(index))], 1)
    names = ("pass@1", "ece", "brier", "auroc")
    names += ("aurc", "excess_aurc", "equal_mass_ece") if selective else ()
    return {name: _interval(point[k], reps[:, k], level) for k, name in enumerate(names)}

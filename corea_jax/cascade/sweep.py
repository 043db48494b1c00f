"""Deferral, the threshold sweep, baselines and tau selection: pure functions of [Q] arrays.

Q is the number of questions. Everything here is a function of five host arrays held in
`CascadeData` (the SLM's confidence, whether each model's answer is right, each model's cost per
question), so a sweep over thousands of thresholds is a few array operations and makes no LLM
call: the LLM has answered every question once, in the first pass (its answers are cached), and
every cascade, baseline and tau is computed from those answers.

Where this departs from (or fills in) the paper:
- Deferral is `confidence < tau`, as in the paper. An invalid confidence (missing or unparseable;
  NaN here) is replaced by `invalid_confidence`, default 0.0: the paper's "treat as 0, i.e. defer"
  [open]. With 0.0 such a question is deferred at every tau > 0; pass `-inf` to defer it even at
  tau = 0, or `inf` to never defer it.
- The sweep visits every tau of `grid` (default 0, 0.01, ..., 1) plus every distinct confidence
  value plus one tau just above the largest confidence, so it reaches "defer everything"; between
  two consecutive distinct confidences the cascade cannot change, so this is the whole curve.
- Random deferral is the *expected value* over deferring a uniformly random subset of the same
  size (exact for sampling without replacement): pass@1 = (1 - f) SLM + f LLM, cost likewise.
- Oracle deferral: `oracle` defers exactly the questions the SLM gets wrong and the LLM gets right
  (the best pass@1 at the least cost); the oracle *curve* defers, at each LLM%, the best questions
  of that many (gain `llm_correct - slm_correct` first, cheaper LLM call on ties).
- Tau selection on a calibration split (`TAU_RULES`): "llm_pass" sets tau to the LLM's pass@1 on
  that split (the paper's rule); "within_llm" takes the cheapest tau whose pass@1 is within
  `max_drop_points` (default 2.0 percentage points [open]) of LLM-only; "budget" takes the best
  pass@1 whose average cost is within `budget` (dollars per question, or a fraction of the
  LLM-only cost with `relative=True`). The chosen tau is then reported on the test split.
- `calibration_mask` splits questions by a seeded hash of their problem text (default half
  [open]): a problem asked twice is on one side only, and the split does not depend on row order.
- `mean_token_probability` is the AvgProb baseline's confidence: the arithmetic mean of the
  per-token probabilities of the completion (default [open]; `kind="geometric"` gives
  exp(mean log-prob)).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from corea_jax.errors import CoreaError

DEFAULT_GRID = np.round(np.linspace(0.0, 1.0, 101), 10)


@dataclasses.dataclass(frozen=True)
class CascadeData:
    """Per-question arrays, all shaped [Q].

    Attributes:
      confidence: the SLM's stated confidence in [0, 1]; NaN where it was missing or invalid.
      slm_correct, llm_correct: whether each model's answer is right (the LLM's on every
        question, deferred or not: that is what makes the sweep free).
      slm_cost, llm_cost: dollars each model's call cost for the question.
      slm_cost_deferred: what the SLM costs on a question it defers; None (the default) is
        `slm_cost`, right for every signal read after the SLM has answered (verbalized, AvgProb,
        probe). A router decides before generating, so a routed-away question pays only the
        SLM's prefill (or nothing): `cascade_cost = where(defer, slm_cost_deferred + llm_cost,
        slm_cost)`.
    """

    confidence: np.ndarray
    slm_correct: np.ndarray
    llm_correct: np.ndarray
    slm_cost: np.ndarray
    llm_cost: np.ndarray
    slm_cost_deferred: np.ndarray | None = None

    def __post_init__(self):
        if self.slm_cost_deferred is None:
            object.__setattr__(self, "slm_cost_deferred", np.asarray(self.slm_cost))
        kinds = {"confidence": np.float64, "slm_correct": bool, "llm_correct": bool}
        size = None
        for field in dataclasses.fields(self):
            value = np.asarray(getattr(self, field.name))
            if value.ndim != 1:
                raise CoreaError(f"CascadeData.{field.name}: expected shape [Q], got {value.shape}")
            if size is not None and value.shape[0] != size:
                raise CoreaError(
                    f"CascadeData.{field.name}: {value.shape[0]} questions, expected {size}"
                )
            size = value.shape[0]
            value = value.astype(kinds.get(field.name, np.float64))
            if "cost" in field.name and not np.all(np.isfinite(value) & (value >= 0)):
                raise CoreaError(f"CascadeData.{field.name}: costs must be finite and >= 0")
            object.__setattr__(self, field.name, value)
        if size == 0:
            raise CoreaError("CascadeData: no questions")

    @property
    def size(self) -> int:
        return int(self.confidence.shape[0])

    @property
    def defer_extra_cost(self) -> np.ndarray:
        """[Q] what deferring a question adds to its cost: the LLM call, less the SLM work a
        router saves (`slm_cost_deferred - slm_cost`, 0 for post-generation signals)."""
        return self.llm_cost + self.slm_cost_deferred - self.slm_cost

    def subset(self, index) -> CascadeData:
        """The questions selected by a boolean mask [Q] or an index array."""
        return CascadeData(
            **{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)}
        )


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    """One cascade (or baseline) on a set of questions: pass@1 in [0, 1], dollars per question,
    and the share of questions sent to the LLM. `tau` is NaN for baselines without one."""

    tau: float
    pass_at_1: float
    avg_cost: float
    llm_fraction: float

    def as_dict(self) -> dict:
        """As JSON: tau None where NaN."""
        return {
            "tau": None if math.isnan(self.tau) else self.tau,
            "pass_at_1": self.pass_at_1,
            "avg_cost": self.avg_cost,
            "llm_fraction": self.llm_fraction,
        }


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The cascade at every tau (arrays shaped [K], sorted by tau) and the baselines.

    `random_*` is random deferral at the same LLM% as the cascade (expected value); `oracle_*` is
    the best deferral of the same number of questions. `oracle` defers exactly the questions the
    SLM gets wrong and the LLM right.
    """

    tau: np.ndarray
    pass_at_1: np.ndarray
    avg_cost: np.ndarray
    llm_fraction: np.ndarray
    random_pass_at_1: np.ndarray
    random_avg_cost: np.ndarray
    oracle_pass_at_1: np.ndarray
    oracle_avg_cost: np.ndarray
    slm_only: OperatingPoint
    llm_only: OperatingPoint
    oracle: OperatingPoint

    def point(self, k: int) -> OperatingPoint:
        return OperatingPoint(
            float(self.tau[k]),
            float(self.pass_at_1[k]),
            float(self.avg_cost[k]),
            float(self.llm_fraction[k]),
        )


def effective_confidence(confidence, invalid_confidence: float = 0.0) -> np.ndarray:
    """Confidence [Q] with invalid (NaN) entries replaced by `invalid_confidence`."""
    if math.isnan(invalid_confidence):
        raise CoreaError("invalid_confidence must be a number (0.0 defers, inf never defers)")
    conf = np.asarray(confidence, np.float64)
    return np.where(np.isnan(conf), invalid_confidence, conf)


def defer_mask(confidence, tau, invalid_confidence: float = 0.0) -> np.ndarray:
    """`confidence < tau` with invalid confidences replaced first; broadcasts like numpy."""
    return effective_confidence(confidence, invalid_confidence) < np.asarray(tau, np.float64)


def evaluate_tau(data: CascadeData, tau: float, invalid_confidence: float = 0.0) -> OperatingPoint:
    """The cascade at one tau, computed directly (the sweep's reference implementation)."""
    defer = defer_mask(data.confidence, tau, invalid_confidence)
    correct = np.where(defer, data.llm_correct, data.slm_correct)
    cost = np.where(defer, data.slm_cost_deferred + data.llm_cost, data.slm_cost)
    return OperatingPoint(
        float(tau), float(correct.mean()), float(cost.mean()), float(defer.mean())
    )


def sweep_taus(confidence, grid=DEFAULT_GRID, invalid_confidence: float = 0.0) -> np.ndarray:
    """Sorted, distinct thresholds [K]: `grid`, every confidence value, and one past the largest."""
    conf = effective_confidence(confidence, invalid_confidence)
    finite = conf[np.isfinite(conf)]
    extra = [np.nextafter(finite.max(), np.inf)] if finite.size else []
    taus = np.concatenate([np.asarray(grid, np.float64), finite, extra])
    return np.unique(taus[np.isfinite(taus)])


def sweep_thresholds(
    data: CascadeData,
    *,
    grid=DEFAULT_GRID,
    taus=None,
    invalid_confidence: float = 0.0,
) -> Sweep:
    """The cascade at every tau of `sweep_taus` (or the given `taus`), and the baselines.

    O((Q + K) log Q): questions are sorted by confidence once, and the number deferred at tau is
    a `searchsorted`; pass@1 and cost follow from cumulative sums of the per-question gain
    `llm_correct - slm_correct` and of the cost of deferring (`defer_extra_cost`) in that order.
    """
    q = data.size
    conf = effective_confidence(data.confidence, invalid_confidence)
    if taus is None:
        taus = sweep_taus(data.confidence, grid, invalid_confidence)
    taus = np.asarray(taus, np.float64)
    order = np.argsort(conf, kind="stable")
    gain = data.llm_correct.astype(np.float64) - data.slm_correct
    cum_gain = np.concatenate([[0.0], np.cumsum(gain[order])])
    extra = data.defer_extra_cost
    cum_extra = np.concatenate([[0.0], np.cumsum(extra[order])])
    deferred = np.searchsorted(conf[order], taus, side="left")

    slm_pass, llm_pass = data.slm_correct.mean(), data.llm_correct.mean()
    slm_cost, llm_cost = data.slm_cost.mean(), data.llm_cost.mean()
    fraction = deferred / q

    # Oracle: the n questions with the largest gain, cheaper deferrals first among equal gains.
    best = np.lexsort((extra, -gain))
    oracle_gain = np.concatenate([[0.0], np.cumsum(gain[best])])
    oracle_cost = np.concatenate([[0.0], np.cumsum(extra[best])])
    helps = gain > 0
    nan = float("nan")
    return Sweep(
        tau=taus,
        pass_at_1=slm_pass + cum_gain[deferred] / q,
        avg_cost=slm_cost + cum_extra[deferred] / q,
        llm_fraction=fraction,
        random_pass_at_1=(1 - fraction) * slm_pass + fraction * llm_pass,
        random_avg_cost=slm_cost + fraction * extra.mean(),
        oracle_pass_at_1=slm_pass + oracle_gain[deferred] / q,
        oracle_avg_cost=slm_cost + oracle_cost[deferred] / q,
        slm_only=OperatingPoint(nan, float(slm_pass), float(slm_cost), 0.0),
        llm_only=OperatingPoint(nan, float(llm_pass), float(llm_cost), 1.0),
        oracle=OperatingPoint(
            nan,
            float(slm_pass + gain[helps].sum() / q),
            float(slm_cost + extra[helps].sum() / q),
            float(helps.mean()),
        ),
    )


# ---------------------------------------------------------------------------------------------
# Choosing tau on a calibration split


@dataclasses.dataclass(frozen=True)
class TauChoice:
    """A tau picked by `rule` on the calibration split, with its operating point there and, once
    `report_on_test` ran, on the test split. `feasible` is False when no tau met the rule's
    constraint and the closest one was taken instead (`note` says which)."""

    rule: str
    tau: float
    calibration: OperatingPoint
    test: OperatingPoint | None = None
    feasible: bool = True
    note: str = ""


def tau_at_llm_pass(sweep: Sweep, data: CascadeData, *, invalid_confidence: float = 0.0):
    """The paper's rule: tau = the LLM's pass@1 on the calibration split."""
    tau = sweep.llm_only.pass_at_1
    return TauChoice("llm_pass", tau, evaluate_tau(data, tau, invalid_confidence))


def tau_within_llm(
    sweep: Sweep,
    data: CascadeData,
    *,
    max_drop_points: float = 2.0,
    invalid_confidence: float = 0.0,
):
    """The cheapest tau whose pass@1 is at most `max_drop_points` (percentage points) below
    LLM-only; ties go to the higher pass@1, then the smaller tau."""
    del data, invalid_confidence
    floor = sweep.llm_only.pass_at_1 - max_drop_points / 100.0
    ok = sweep.pass_at_1 >= floor - 1e-12
    rule = f"within_llm({max_drop_points:g} points)"
    if not ok.any():
        k = int(np.argmax(sweep.pass_at_1))
        note = f"no tau within {max_drop_points:g} points of LLM-only; took the best pass@1"
        return TauChoice(rule, float(sweep.tau[k]), sweep.point(k), feasible=False, note=note)
    k = _first_best(ok, sweep.avg_cost, -sweep.pass_at_1, sweep.tau)
    return TauChoice(rule, float(sweep.tau[k]), sweep.point(k))


def tau_for_budget(
    sweep: Sweep,
    data: CascadeData,
    *,
    budget: float,
    relative: bool = False,
    invalid_confidence: float = 0.0,
):
    """The best pass@1 with average cost <= `budget` dollars per question (or, `relative=True`,
    <= budget x the LLM-only cost); ties go to the lower cost, then the smaller tau."""
    del data, invalid_confidence
    limit = budget * sweep.llm_only.avg_cost if relative else budget
    ok = sweep.avg_cost <= limit * (1 + 1e-12)
    rule = f"budget({budget:g}{' x LLM-only' if relative else ' $/question'})"
    if not ok.any():
        k = int(np.argmin(sweep.avg_cost))
        note = f"no tau costs <= {limit:.6g} per question; took the cheapest"
        return TauChoice(rule, float(sweep.tau[k]), sweep.point(k), feasible=False, note=note)
    k = _first_best(ok, -sweep.pass_at_1, sweep.avg_cost, sweep.tau)
    return TauChoice(rule, float(sweep.tau[k]), sweep.point(k))


def _first_best(ok: np.ndarray, *keys: np.ndarray) -> int:
    """Index of the lexicographically smallest `keys` among the entries where `ok`."""
    candidates = np.flatnonzero(ok)
    order = np.lexsort(tuple(key[candidates] for key in reversed(keys)))
    return int(candidates[order[0]])


TAU_RULES: Mapping[str, Callable[..., TauChoice]] = {
    "llm_pass": tau_at_llm_pass,
    "within_llm": tau_within_llm,
    "budget": tau_for_budget,
}


def select_tau(
    rule: str,
    calibration: CascadeData,
    *,
    grid=DEFAULT_GRID,
    invalid_confidence: float = 0.0,
    **options,
) -> TauChoice:
    """Pick tau on the calibration split with one of `TAU_RULES` (options go to the rule)."""
    if rule not in TAU_RULES:
        raise CoreaError(f"unknown tau rule {rule!r}; choose one of {sorted(TAU_RULES)}")
    sweep = sweep_thresholds(calibration, grid=grid, invalid_confidence=invalid_confidence)
    try:
        return TAU_RULES[rule](sweep, calibration, invalid_confidence=invalid_confidence, **options)
    except TypeError as exc:
        raise CoreaError(f"tau rule {rule!r}: {exc}") from None


def report_on_test(
    choice: TauChoice, test: CascadeData, invalid_confidence: float = 0.0
) -> TauChoice:
    """`choice` with its operating point on the test split filled in."""
    return dataclasses.replace(choice, test=evaluate_tau(test, choice.tau, invalid_confidence))


def calibration_mask(
    ids: Sequence[str],
    fraction: float = 0.5,
    seed: int = 0,
    problems: Sequence[str] | None = None,
) -> np.ndarray:
    """Boolean [Q]: True for the questions forming the calibration split (about
    `fraction * Q` of them).

    Whole *problems* are ranked by sha256(f"{seed}|{problem}") and taken in that order until
    `round(fraction * Q)` questions are on the calibration side, so two questions with the same
    problem text (`problems`, e.g. `corea_jax.data.question_key` of each question; default:
    the ids, every question its own problem) are always on the same side: tau is never chosen
    on a problem it is then tested on. A side depends on the problem and the seed only, never
    on row order.
    """
    if not 0.0 < fraction < 1.0:
        raise CoreaError(f"calibration fraction {fraction}: must be strictly between 0 and 1")
    keys = [str(i) for i in ids]
    if len(set(keys)) != len(keys):
        raise CoreaError("calibration_mask: question ids are not unique")
    groups = keys if problems is None else [str(p) for p in problems]
    if len(groups) != len(keys):
        raise CoreaError(f"calibration_mask: {len(groups)} problems for {len(keys)} questions")
    by_problem: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_problem.setdefault(g, []).append(i)
    # The salt keeps this hash unrelated to every other seeded hash of the same text (the
    # simulated LLM's right/wrong draw is sha256(f"{seed}|{question}"): unsalted, the split
    # put exactly the questions it gets right on the calibration side).
    salted = lambda g: hashlib.sha256(f"corea-calibration|{seed}|{g}".encode()).hexdigest()  # noqa: E731
    order = sorted(by_problem, key=salted)
    mask = np.zeros(len(keys), bool)
    target, taken = int(round(fraction * len(keys))), 0
    for g in order:
        if taken >= target:
            break
        mask[by_problem[g]] = True
        taken += len(by_problem[g])
    return mask


# ---------------------------------------------------------------------------------------------
# The AvgProb confidence signal


def mean_token_probability(logprobs, mask, kind: str = "arithmetic"):
    """The AvgProb baseline's confidence [Q] from per-token log-probs [Q, T] and a mask [Q, T].

    `mask` is True on the tokens that count (the completion; not the prompt, not padding).
    "arithmetic" (default) is mean_t exp(logprob_t); "geometric" is exp(mean_t logprob_t), the
    inverse perplexity. A row with no counted token gets NaN (an invalid confidence). Pure `jnp`,
    jittable with `kind` static.
    """
    logprobs = jnp.asarray(logprobs, jnp.float32)
    mask = jnp.asarray(mask, bool)
    count = mask.sum(axis=-1)
    safe = jnp.maximum(count, 1)
    if kind == "arithmetic":
        value = jnp.where(mask, jnp.exp(logprobs), 0.0).sum(axis=-1) / safe
    elif kind == "geometric":
        value = jnp.exp(jnp.where(mask, logprobs, 0.0).sum(axis=-1) / safe)
    else:
        raise CoreaError(f"mean_token_probability kind {kind!r}: use 'arithmetic' or 'geometric'")
    return jnp.where(count > 0, value, jnp.nan)

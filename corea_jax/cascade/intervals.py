"""Bootstrap intervals of a cascade's operating point: what a reader compares, with its noise.

For a tau applied to the test split's questions, `choice_intervals` gives 95% intervals
(bootstrap over questions, `corea_jax.scoring.stats`) of the cascade's pass@1, of its
*paired* difference to LLM-only (the same questions answered both ways, so their difficulty
cancels), of its cost relative to LLM-only (a ratio of means, both resampled together) and of
its LLM share. The point values equal the sweep's operating point at that tau.
"""

from __future__ import annotations

import math

import numpy as np

from corea_jax.cascade.sweep import CascadeData, defer_mask
from corea_jax.scoring import stats


def _cost_vs_llm(cascade_cost: np.ndarray, llm_cost: np.ndarray) -> float:
    total = float(np.mean(llm_cost))
    return float(np.mean(cascade_cost)) / total - 1.0 if total > 0 else math.nan


def choice_intervals(
    test: CascadeData,
    tau: float,
    invalid_confidence: float = 0.0,
    *,
    seed: int = 0,
    samples: int = 1,
) -> dict[str, dict]:
    """`{statistic: Interval.to_dict()}` for the cascade at `tau` on `test`'s questions:
    pass_at_1, pass_vs_llm (fraction; x100 for points), cost_vs_llm (fraction), llm_fraction.

    With `samples` = k > 1 the rows are k SLM samples per question, question-major: they are
    resampled as [Q, k] blocks, a question with its k samples (a cluster bootstrap)."""
    if not math.isfinite(tau):
        return {}
    defer = defer_mask(test.confidence, tau, invalid_confidence)
    correct = np.where(defer, test.llm_correct, test.slm_correct).astype(np.float64)
    cost = np.where(defer, test.slm_cost_deferred + test.llm_cost, test.slm_cost)
    llm_correct = test.llm_correct.astype(np.float64)
    q = lambda a: np.asarray(a).reshape(-1, samples)  # noqa: E731 - [R] -> [Q, k]
    out = {
        "pass_at_1": stats.bootstrap(np.mean, q(correct), seed=seed),
        "pass_vs_llm": stats.paired_difference(
            np.mean, (q(correct),), (q(llm_correct),), seed=seed
        ),
        "cost_vs_llm": stats.bootstrap(_cost_vs_llm, q(cost), q(test.llm_cost), seed=seed),
        "llm_fraction": stats.bootstrap(np.mean, q(defer.astype(np.float64)), seed=seed),
    }
    return {name: iv.to_dict() for name, iv in out.items()}


def interval_line(rule: str, intervals: dict) -> str:
    """One Markdown bullet: the rule's test-split figures with their 95% intervals."""
    if not intervals:
        return f"- tau by {rule}: no tau chosen"

    def pct(name, signed=False):
        iv = intervals[name]
        return stats.Interval(**iv).format(scale=100, digits=1, signed=signed)

    return (
        f"- tau by {rule}: pass@1 {pct('pass_at_1')}%, vs LLM-only {pct('pass_vs_llm', True)} "
        f"points, cost vs LLM-only {pct('cost_vs_llm', True)}%, LLM% {pct('llm_fraction')}"
    )

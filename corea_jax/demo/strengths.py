"""The cascade's claims at several strengths of the simulated LLM.

The paper's pair (Qwen2.5-7B vs 32B) is a few points apart in pass@1; the demo's simulated LLM
is far stronger than its tiny SLM. Whether a cascade saves cost at no accuracy loss depends on
that gap, so the demo reports the joint claim at the configured LLM and at LLMs nearer the SLM:
`llm_gaps` points above the trained SLMs' mean pass@1 on the calibration split (the SLMs'
answers are computed once; only the LLM's known per-question accuracy changes, so this costs no
generation).

A nearer LLM keeps the configured ceiling and the shape of its accuracy,
`ceiling * exp(-decay * digit operations)` (`corea_jax.testing.simulated_llm`), with the decay
solved by bisection so that its expected pass@1 on the calibration split is the SLMs' plus the
gap. Everything is chosen on the calibration split; tau then follows the paper's rule from the
LLM's expected pass@1 there (`tables.LLMView`). The reply, and so the LLM's cost per question,
does not depend on its strength.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from corea_jax.demo.tables import LLMView, by_system, expected_view


def digit_work(cascade) -> dict[tuple[str, str], int]:
    """`{(dataset, id): digit operations}` of every synthetic question of the cascade."""
    from corea_jax.cascade.slm_answers import load_questions
    from corea_jax.data.synthetic import problem_of
    from corea_jax.testing.simulated_llm import digit_operations

    out = {}
    for name, (records, _) in load_questions(cascade.datasets).items():
        for r in records:
            if "ops" in r.metadata:
                out[(name, r.id)] = digit_operations(problem_of(r))
    return out


def solve_decay(work: np.ndarray, ceiling: float, target: float) -> float | None:
    """The decay d >= 0 with mean(ceiling * exp(-d * work)) = target, or None when no d
    reaches it (target above the ceiling or at / below 0)."""
    if not 0 < target <= ceiling:
        return None
    lo, hi = 0.0, 1.0
    while np.mean(ceiling * np.exp(-hi * work)) > target and hi < 1e3:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.mean(ceiling * np.exp(-mid * work)) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def calibration_pass(results, specs: list[dict], group: str) -> float:
    """The trained verbalized policies' mean SLM pass@1 on the calibration split (all seeds)."""
    values = []
    for mine in by_system(specs).values():
        if mine[0]["signal"] != "verbalized" or mine[0]["preset"] == "warm":
            continue
        for spec in mine:
            rows = [
                r
                for r in results[spec["slm"]].rows
                if r["split"] == "calibration" and (group == "all" or r["dataset"] == group)
            ]
            values.append(np.mean([r["slm_correct"] for r in rows]))  # fmt: skip
    return float(np.mean(values))


@dataclasses.dataclass(frozen=True)
class Strength:
    """One simulated LLM: its view, and how it was made (decay None: the configured one)."""

    view: LLMView
    gap: float | None
    decay: float | None
    llm_pass_calibration: float
    note: str = ""


def strengths(cascade, results, specs, group: str, gaps) -> list[Strength]:
    """The configured LLM (expected view) and one per gap, nearest last. Empty when the LLM is
    real (no known per-question accuracy)."""
    base = expected_view(results, "configured")
    if not base.expected:
        return []
    calibration = {(r["dataset"], r["id"]) for r in next(iter(results.values())).rows
                   if r["split"] == "calibration"}  # fmt: skip
    keys = sorted(calibration)
    out = [Strength(base, None, None, float(np.mean([base.p[k] for k in keys])))]
    work = digit_work(cascade)
    if not all(k in work for k in base.p):
        return out  # not the synthetic task: no digit work to scale the accuracy by
    slm = calibration_pass(results, specs, group)
    ceiling = cascade.llm.simulated_difficulty_ceiling
    cal_work = np.array([work[k] for k in keys], float)
    for gap in gaps:
        target = slm + gap
        decay = solve_decay(cal_work, ceiling, target)
        if decay is None:
            out.append(
                Strength(
                    LLMView(f"SLM+{100 * gap:.0f}"),
                    gap,
                    None,
                    math.nan,
                    f"no decay reaches {target:.3f} below the ceiling {ceiling}",
                )
            )
            continue
        p = {k: float(ceiling * math.exp(-decay * w)) for k, w in work.items() if k in base.p}
        cal = float(np.mean([p[k] for k in keys]))
        out.append(Strength(LLMView(f"SLM+{100 * gap:.0f}", p), gap, decay, cal))
    return out

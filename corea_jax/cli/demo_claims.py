"""The demo's claims (issue 16's targets), decided by 95% intervals, never by point estimates.

- COREA's ECE below RLVR's: the interval of ECE(COREA) - ECE(RLVR) lies below 0;
- COREA's ECE not above Brier's: the interval of ECE(COREA) - ECE(Brier) is not wholly above 0;
- COREA's SLM pass@1 within 2 points of RLVR's: the interval of the difference lies in [-2, +2];
- each verbalized cascade at the paper's tau (tau = the LLM's pass@1 on the calibration split):
  cost at least 20% below LLM-only and pass@1 at most 2 points below it, both whole intervals.

Differences pair seed s of one reward with seed s of the other (same data order and rollout
draws) and the same test questions; intervals come from the two-level bootstrap of
`corea_jax.scoring.stats.seed_question_bootstrap` (questions shared by all seeds, seeds with
replacement), so they include seed-to-seed variation. With one seed they are the paired
bootstrap over questions. A claim is "met" when its interval lies inside the target, "not met"
when it lies wholly outside, and "not resolved" when it straddles a boundary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from corea_jax.cli.demo_experiment import STATISTICS, paired_stat
from corea_jax.scoring.stats import Interval, verdict


def _line(claim: str, interval: Interval, target: str, outcome: str, scale=100.0, unit="") -> str:
    digits = 1 if scale == 100.0 else 3
    shown = interval.format(scale=scale, digits=digits, signed=True)
    return f"- {claim}: {shown}{unit} (target: {target}): **{outcome}**"


def claim_lines(
    compare_dir: Path, specs: list[dict], group: str, rule: str, rows: list[dict],
    n_boot: int = 1000,
) -> list[str]:  # fmt: skip
    """Markdown bullets, one per claim; `rows` are `demo_experiment.headline_rows`."""
    by_system = {}
    for spec in specs:
        by_system.setdefault(spec["system"], []).append(spec)
    corea, lines = by_system.get("COREA"), []
    ece_fn, ece_keys = STATISTICS["ece"]
    for other, relation in (("RLVR-SLM-Verb", "below"), ("Brier-SLM-Verb", "not above")):
        if corea is None or other not in by_system:
            continue
        diff = paired_stat(compare_dir, corea, by_system[other], group, rule, ece_fn, ece_keys,
                           n_boot)  # fmt: skip
        if relation == "below":
            outcome, target = verdict(diff, high=0.0), "interval below 0"
        else:  # met unless the whole interval says COREA is worse
            outcome = "not met" if diff.low > 0 else "met"
            target = "interval not wholly above 0"
        lines.append(_line(f"ECE(COREA) - ECE({other})", diff, target, outcome, scale=1.0))
    if corea is not None and "RLVR-SLM-Verb" in by_system:
        pass_fn = lambda c: float(np.mean(c))  # noqa: E731
        diff = paired_stat(compare_dir, corea, by_system["RLVR-SLM-Verb"], group, rule, pass_fn,
                           ("slm_correct",), n_boot)  # fmt: skip
        outcome = verdict(diff, low=-0.02, high=0.02)
        lines.append(
            _line(
                "SLM pass@1, COREA - RLVR-SLM-Verb",
                diff,
                "within [-2, +2]",
                outcome,
                unit=" points",
            )  # fmt: skip
        )
    for r in rows:
        if not r["fitted"] or r["signal"] != "verbalized" or r["preset"] == "warm":
            continue
        cost = Interval(**r["stats"]["cost_vs_llm"]["interval"])
        gap = Interval(**r["stats"]["pass_vs_llm"]["interval"])
        outcome_cost = verdict(cost, high=-0.20)
        outcome_gap = verdict(gap, low=-0.02)
        outcomes = (outcome_cost, outcome_gap)
        both = ("met" if outcomes == ("met", "met")
                else "not met" if "not met" in outcomes else "not resolved")  # fmt: skip
        lines.append(
            f"- {r['system']} cascade at tau = LLM pass@1: cost vs LLM-only "
            f"{cost.format(scale=100, digits=1, signed=True)}% (target <= -20%: {outcome_cost}), "
            f"pass@1 vs LLM-only {gap.format(scale=100, digits=1, signed=True)} points "
            f"(target >= -2: {outcome_gap}): **{both}**"
        )
    return lines

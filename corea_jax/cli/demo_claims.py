"""The demo's claims, decided by 95% bootstrap intervals over the test questions, never by
point estimates (issue 16's targets):

- COREA's ECE below RLVR's: the paired interval of ECE(COREA) - ECE(RLVR) lies below 0;
- COREA's ECE not above Brier's: the paired interval of ECE(COREA) - ECE(Brier) does not lie
  wholly above 0;
- COREA's SLM pass@1 within 2 points of RLVR's: the paired interval of the difference lies in
  [-2, +2] points;
- each cascade at the paper's tau (tau = the LLM's pass@1): cost at least 20% below LLM-only
  and pass@1 at most 2 points below it, both whole intervals (from the cascade's summary).

A claim is "met" when its interval lies inside the target, "not met" when it lies wholly
outside, and "not resolved" when it straddles a boundary: more test questions (or seeds) are
needed to decide it. Policies are paired question by question (the same test questions, by id).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from corea_jax.scoring import metrics
from corea_jax.scoring.stats import Interval, paired_difference, verdict

_ece = jax.jit(metrics.expected_calibration_error)


def test_arrays(out: Path) -> dict[str, np.ndarray]:
    """A policy's test-split answers from its cascade `questions.jsonl`, ordered by id."""
    rows = [json.loads(x) for x in (out / "questions.jsonl").read_text().splitlines()]
    test = sorted((r for r in rows if r["split"] == "test"), key=lambda r: (r["dataset"], r["id"]))
    return {
        "id": np.array([f"{r['dataset']}/{r['id']}" for r in test]),
        "confidence": np.array([r["confidence"] or 0.0 for r in test], np.float32),
        "correct": np.array([r["slm_correct"] for r in test], bool),
    }


def _ece_stat(confidence, correct) -> float:
    return float(_ece(confidence, correct))


def _pass(correct) -> float:
    return float(np.mean(correct))


def _line(claim: str, interval: Interval, target: str, outcome: str, scale=100.0, unit="") -> str:
    digits = 1 if scale == 100.0 else 3
    shown = interval.format(scale=scale, digits=digits, signed=True)
    return f"- {claim}: {shown}{unit} (target: {target}): **{outcome}**"


def claim_lines(arrays: dict[str, dict], cascades: dict[str, dict], seed: int = 0) -> list[str]:
    """Markdown bullets, one per claim. `arrays`: `test_arrays` per policy; `cascades`: per
    policy the llm_pass choice of its summary (with `test_intervals`)."""
    lines = []
    corea = arrays.get("corea")
    for other, relation in (("rlvr", "below"), ("brier", "not above")):
        if corea is None or other not in arrays:
            continue
        if not np.array_equal(corea["id"], arrays[other]["id"]):
            raise ValueError(f"corea and {other} were tested on different questions")
        diff = paired_difference(
            _ece_stat,
            (corea["confidence"], corea["correct"]),
            (arrays[other]["confidence"], arrays[other]["correct"]),
            seed=seed,
        )
        if relation == "below":
            outcome, target = verdict(diff, high=0.0), "interval below 0"
        else:  # met unless the whole interval says COREA is worse
            outcome = "not met" if diff.low > 0 else "met"
            target = "interval not wholly above 0"
        name = {"rlvr": "RLVR", "brier": "Brier"}[other]
        lines.append(_line(f"ECE(COREA) - ECE({name})", diff, target, outcome, scale=1.0))
    if corea is not None and "rlvr" in arrays:
        diff = paired_difference(
            _pass, (corea["correct"],), (arrays["rlvr"]["correct"],), seed=seed
        )
        outcome = verdict(diff, low=-0.02, high=0.02)
        lines.append(
            _line("SLM pass@1, COREA - RLVR", diff, "within [-2, +2]", outcome, unit=" points")
        )
    for policy, choice in cascades.items():
        iv = choice.get("test_intervals") or {}
        if not iv:
            lines.append(f"- {policy} cascade at tau = LLM pass@1: no tau chosen: **not met**")
            continue
        cost, gap = Interval(**iv["cost_vs_llm"]), Interval(**iv["pass_vs_llm"])
        outcome_cost = verdict(cost, high=-0.20)
        outcome_gap = verdict(gap, low=-0.02)
        both = (
            "met"
            if outcome_cost == outcome_gap == "met"
            else "not met"
            if "not met" in (outcome_cost, outcome_gap)
            else "not resolved"
        )
        lines.append(
            f"- {policy} cascade at tau = LLM pass@1 ({choice['tau']:.3f}): cost vs LLM-only "
            f"{cost.format(scale=100, digits=1, signed=True)}% (target <= -20%: {outcome_cost}), "
            f"pass@1 vs LLM-only {gap.format(scale=100, digits=1, signed=True)} points "
            f"(target >= -2: {outcome_gap}): **{both}**"
        )
    return lines

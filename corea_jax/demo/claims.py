"""The demo's claims, decided by 95% intervals, never by point estimates.

A claim is "met" when its interval lies inside the target, "not met" when it lies wholly
outside, and "not resolved" when it straddles a boundary (more questions or seeds would be
needed to decide). The verdict functions are pure (`below`, `within`, `non_inferior`, `joint`)
and tested at their boundaries:

- COREA's ECE below RLVR's: the interval of ECE(COREA) - ECE(RLVR) lies below 0;
- COREA's ECE not worse than Brier's (non-inferiority, margin `NON_INFERIORITY_MARGIN`): met
  when the interval's upper end is below +0.01, not met when it lies wholly above 0, not
  resolved otherwise (an inconclusive interval does not pass);
- COREA's SLM pass@1 within 2 points of RLVR's: the interval of the difference in [-2, +2];
- the paper's cascade claim, **joint at one tau** (tau = the LLM's pass@1 on the calibration
  split): met only when the cost interval is at most -20% *and* the pass@1-vs-LLM-only interval
  at least -2 points; not met when either lies wholly outside its target;
- the calibration target of issue 25 for each trained verbalized policy: AUROC >= 0.75 and
  ECE <= 0.10, both whole intervals.

Differences pair seed s of one reward with seed s of the other (same data order and rollout
draws) and the same test questions; intervals come from the two-level bootstrap of
`corea_jax.scoring.stats.seed_question_bootstrap` (questions shared by all seeds, seeds with
replacement), so they include seed-to-seed variation.
"""

from __future__ import annotations

import math

from corea_jax.demo.tables import SAMPLED, STATISTICS, LLMView, by_system, paired_stat
from corea_jax.scoring.stats import Interval, verdict

NON_INFERIORITY_MARGIN = 0.01  # ECE points COREA may lie above Brier and still be "not worse"
COST_TARGET = -0.20  # the cascade's cost vs LLM-only, at most
ACCURACY_MARGIN = -0.02  # the cascade's pass@1 vs LLM-only, at least
AUROC_TARGET, ECE_TARGET = 0.75, 0.10


def below(interval: Interval, bound: float = 0.0) -> str:
    """The whole interval lies below `bound`."""
    return verdict(interval, high=bound) if interval.high != bound else "not resolved"


def within(interval: Interval, low: float, high: float) -> str:
    return verdict(interval, low=low, high=high)


def non_inferior(interval: Interval, margin: float = NON_INFERIORITY_MARGIN) -> str:
    """A difference (ours - theirs, lower is better) is not worse: upper end < `margin` is met,
    lower end > 0 is not met, anything else is not resolved."""
    if not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return "not resolved"
    if interval.high < margin:
        return "met"
    if interval.low > 0:
        return "not met"
    return "not resolved"


def joint(*outcomes: str) -> str:
    """Several targets at once: met when all are met, not met when any is not met."""
    if all(o == "met" for o in outcomes):
        return "met"
    return "not met" if "not met" in outcomes else "not resolved"


def _line(claim: str, interval: Interval, target: str, outcome: str, scale=100.0, unit="") -> str:
    digits = 1 if scale == 100.0 else 3
    shown = interval.format(scale=scale, digits=digits, signed=True)
    return f"- {claim}: {shown}{unit} (target: {target}): **{outcome}**"


# A joint claim's parts: (statistic of `system_stats`, label, low, high, how it is shown).
CASCADE_PARTS = (
    ("cost_vs_llm", "cost vs LLM-only", -math.inf, COST_TARGET, "pct"),
    ("pass_vs_llm", "pass@1 vs LLM-only", ACCURACY_MARGIN, math.inf, "points"),
)
CALIBRATION_PARTS = (
    ("auroc", "AUROC", AUROC_TARGET, math.inf, "value"),
    ("ece", "ECE", -math.inf, ECE_TARGET, "value"),
)


def _shown(interval: Interval, how: str) -> str:
    if how == "value":
        return interval.format(digits=3)
    unit = "%" if how == "pct" else " points"
    return interval.format(scale=100, digits=1, signed=True) + unit


def _bound(low: float, high: float, how: str) -> str:
    scale, unit = (1, "") if how == "value" else (100, "%" if how == "pct" else "")
    return f">= {low * scale:g}{unit}" if math.isfinite(low) else f"<= {high * scale:g}{unit}"


def joint_claim(stats: dict, parts) -> tuple[str, str]:
    """A claim of several targets on one system's `system_stats`, each decided by its whole
    interval, then jointly (`joint`): (the parts as text, the joint outcome)."""
    texts, outcomes = [], []
    for key, label, low, high, how in parts:
        interval = Interval(**stats[key]["interval"])
        outcome = verdict(interval, low=low, high=high)
        texts.append(f"{label} {_shown(interval, how)} ({_bound(low, high, how)}: {outcome})")
        outcomes.append(outcome)
    return " and ".join(texts), joint(*outcomes)


def cascade_claim(name: str, stats: dict) -> str:
    """The joint cascade claim of one system, at tau = the LLM's pass@1."""
    text, outcome = joint_claim(stats, CASCADE_PARTS)
    return f"- {name} cascade at tau = LLM pass@1: {text}, jointly: **{outcome}**"


def calibration_claim(name: str, stats: dict) -> str:
    """AUROC >= 0.75 and ECE <= 0.10 of one verbalized policy, both whole intervals."""
    text, outcome = joint_claim(stats, CALIBRATION_PARTS)
    return f"- {name}: {text}, jointly: **{outcome}**"


# The calibrated policies whose claims against RLVR (and Brier) are printed, in this order.
CLAIMANTS = ("COREA", "COREA-split (beyond the paper)")


def claim_lines(results, specs: list[dict], group: str, rows: list[dict],
                llm: LLMView = SAMPLED, n_boot: int = 1000) -> list[str]:  # fmt: skip
    """Markdown bullets, one per claim; `rows` are `tables.headline_rows` under `llm`. For
    COREA and COREA-split (where run): ECE below RLVR's, not worse than Brier's, SLM pass@1
    within 2 points of RLVR's; then every trained verbalized policy's calibration target and
    joint cascade claim."""
    systems, lines = by_system(specs), []
    ece_fn, ece_keys = STATISTICS["ece"]
    pass_fn, pass_keys = STATISTICS["slm_pass"]
    for name in (n for n in CLAIMANTS if n in systems):
        short = name.split(" (")[0]
        mine = systems[name]
        if "RLVR-SLM-Verb" in systems:
            rlvr = systems["RLVR-SLM-Verb"]
            diff = paired_stat(results, mine, rlvr, group, ece_fn, ece_keys, llm, n_boot)
            lines.append(_line(f"ECE({short}) - ECE(RLVR-SLM-Verb)", diff, "interval below 0",
                               below(diff), scale=1.0))  # fmt: skip
        if "Brier-SLM-Verb" in systems:
            brier = systems["Brier-SLM-Verb"]
            diff = paired_stat(results, mine, brier, group, ece_fn, ece_keys, llm, n_boot)
            target = f"upper end < +{NON_INFERIORITY_MARGIN} (non-inferior)"
            lines.append(_line(f"ECE({short}) - ECE(Brier-SLM-Verb)", diff, target,
                               non_inferior(diff), scale=1.0))  # fmt: skip
        if "RLVR-SLM-Verb" in systems:
            diff = paired_stat(results, mine, systems["RLVR-SLM-Verb"], group, pass_fn,
                               pass_keys, llm, n_boot)  # fmt: skip
            lines.append(_line(f"SLM pass@1, {short} - RLVR-SLM-Verb", diff, "within [-2, +2]",
                               within(diff, -0.02, 0.02), unit=" points"))  # fmt: skip
    trained = [
        r for r in rows if r["fitted"] and r["signal"] == "verbalized" and r["preset"] != "warm"
    ]
    lines += [calibration_claim(r["system"], r["stats"]) for r in trained]
    lines += [cascade_claim(r["system"], r["stats"]) for r in trained]
    return lines

"""Step 4 of the cascade: its results from the question rows, as pure functions.

`summarize(cfg, rows, header)` groups the rows (each dataset, and "all" pooled when there are
several) and, per group and per confidence signal of `signals.use`, picks tau on the
calibration split by each rule of `tau.rules` and reports it on the test split, with the sweep,
the baselines, bootstrap intervals (questions resampled with their `slm.samples` samples), the
signal's calibration (ECE equal-width and equal-mass, Brier, AUROC, AURC, distinct values),
per-level calibration where the questions have levels, the LLM's own interval, the cost per
question of SLM only and of LLM only with their ratio and tokens (`cost_per_question`: the
regime the savings come from) and, for a simulated LLM whose chance of being right is known,
each tau's expected pass@1. It returns a
`CascadeResult` for `report.write_cascade`. `evaluation_metrics` is `corea-jax evaluate`'s.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from corea_jax.cascade.cache import redact_url
from corea_jax.cascade.cost import Price
from corea_jax.cascade.intervals import choice_intervals
from corea_jax.cascade.settings import CascadeConfig
from corea_jax.cascade.sweep import (
    CascadeData,
    Sweep,
    TauChoice,
    defer_mask,
    report_on_test,
    select_tau,
    sweep_thresholds,
)
from corea_jax.scoring import metrics as metrics_lib
from corea_jax.scoring import stats
from corea_jax.scoring.metrics import auroc, calibration_summary, per_group_calibration
from corea_jax.scoring.stats import calibration_intervals

# The row key holding each signal's confidence (`SignalsConfig.use` picks which are compared).
SIGNAL_KEYS = {"verbalized": "confidence", "avgprob": "avgprob", "probe": "probe",
               "router": "router"}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SignalResult:
    """One confidence signal on one group: the test split's data and sweep, the chosen taus."""

    test: CascadeData
    sweep: Sweep
    choices: tuple[TauChoice, ...]


@dataclasses.dataclass(frozen=True)
class GroupResult:
    """One group: its summary entry, each signal's result, and the SLM's test-split
    (confidence, correct) per signal for the reliability diagram."""

    entry: dict
    signals: dict[str, SignalResult]
    reliability: dict[str, tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class CascadeResult:
    """What `report.write_cascade` renders: question rows, `summary.json`, per-group results."""

    rows: list[dict]
    summary: dict
    groups: dict[str, GroupResult]
    simulated: bool
    llm_title: str
    prices: dict[str, Price]  # "slm", "llm"
    bins: int
    invalid_confidence: float


def summarize(cfg: CascadeConfig, rows: list[dict], header: dict) -> CascadeResult:
    """The cascade's results from the question rows; `header` (model directory, call counts,
    samples drawn) is copied into the summary. Pure: writes nothing."""
    groups = {name: [r for r in rows if r["dataset"] == name] for name in _datasets(rows)}
    if len(groups) > 1:
        groups["all"] = rows
    simulated, llm = cfg.llm.simulated, cfg.llm
    summary = {
        "simulated_llm": simulated,
        "slm": {"model_dir": header["model_dir"], "price_name": cfg.slm.price_name},
        "llm": {
            "model": llm.model,
            "base_url": "simulated (in-process)" if simulated else redact_url(llm.base_url),
        },
        "llm_calls": header["llm_calls"],
        "slm_samples_drawn": header["slm_samples_drawn"],
        "signals": list(cfg.signals.use),
        "invalid_confidence": cfg.tau.invalid_confidence,
        "fitted_signals": header.get("fitted_signals", {}),
        # What each side is sent and counted with (`LLMConfig`: billing both alike).
        "billing": {
            "llm_messages": llm.messages,
            "llm_usage": llm.billed_usage,
            "llm_simulated_reply": llm.simulated_reply if simulated else None,
        },
        "groups": {},
    }
    results = {}
    for group, grows in groups.items():
        results[group] = _group(cfg, grows)
        summary["groups"][group] = results[group].entry
    prices = cfg.price_table()
    return CascadeResult(
        rows=rows,
        summary=summary,
        groups=results,
        simulated=simulated,
        llm_title=f"SIMULATED LLM ({llm.model})" if simulated else llm.model,
        prices={"slm": prices.price(cfg.slm.price_name), "llm": prices.price(llm.model)},
        bins=cfg.report.bins,
        invalid_confidence=cfg.tau.invalid_confidence,
    )


def _datasets(rows) -> list[str]:
    return list(dict.fromkeys(r["dataset"] for r in rows))


def _group(cfg: CascadeConfig, rows: list[dict]) -> GroupResult:
    invalid, tau, k, bins = cfg.tau.invalid_confidence, cfg.tau, cfg.slm.samples, cfg.report.bins
    mask = np.array([r["split"] == "calibration" for r in rows])
    correct = np.array([r["slm_correct"] for r in rows], bool)
    slm_rows = [{"correct": r["slm_correct"], "confidence": r["confidence"],
                 "format_ok": r["slm_format_ok"]} for r in rows]  # fmt: skip
    entry = {"n": len(rows), "n_calibration": int(mask.sum()), "samples_per_question": k,
             "n_questions": len(rows) // k, "n_test_questions": int((~mask).sum()) // k,
             "signals": {}}  # fmt: skip
    entry["slm_metrics"] = _calibration(slm_rows, bins, invalid)
    entry["slm_metrics"].pop("reliability")
    slm_conf = np.where(np.isnan(c := confidences(rows)), invalid, c)
    # Samples of one question move together in the bootstrap: [Q, k] arrays.
    entry["slm_intervals"] = {
        name: iv.to_dict()
        for name, iv in calibration_intervals(
            correct.reshape(-1, k), slm_conf.reshape(-1, k), n_bins=bins, selective=True
        ).items()
    }
    levels = [r.get("level") for r in rows]
    if all(level is not None for level in levels) and len(set(levels)) > 1:
        test_levels = [lv for lv, m in zip(levels, mask, strict=True) if not m]
        entry["slm_by_level"] = per_group_calibration(
            slm_conf[~mask], correct[~mask], test_levels, n_bins=bins
        )
    entry["cost_per_question"] = cost_per_question([r for r in rows if r["split"] == "test"])
    test_llm = np.array([r["llm_correct"] for r in rows if r["split"] == "test"], float)
    entry["llm_intervals"] = {"pass_at_1": stats.bootstrap(np.mean, test_llm.reshape(-1, k),
                                                           seed=tau.seed).to_dict()}  # fmt: skip
    p_llm = None
    if all("llm_p_correct" in r for r in rows):
        p_llm = np.array([r["llm_p_correct"] for r in rows])
        entry["llm_expected_pass_at_1"] = float(p_llm[~mask].mean())
    results, reliability = {}, {}
    slm_cost = np.array([r["slm_cost"] for r in rows])
    for signal in cfg.signals.use:
        conf = confidences(rows, SIGNAL_KEYS[signal])
        reliability[f"SLM {signal}"] = (conf[~mask], correct[~mask])
        data = CascadeData(
            conf,
            correct,
            np.array([r["llm_correct"] for r in rows], bool),
            slm_cost,
            np.array([r["llm_cost"] for r in rows]),
            np.array([r["slm_prefill_cost"] for r in rows]) if signal == "router" else None,
        )
        cal, test = data.subset(mask), data.subset(~mask)
        grid = tau.grid()
        choices = tuple(
            report_on_test(
                select_tau(
                    rule, cal, grid=grid, invalid_confidence=invalid, **tau.rule_options(rule)
                ),
                test,
                invalid,
            )  # fmt: skip
            for rule in tau.rules
        )
        sweep = sweep_thresholds(test, grid=grid, invalid_confidence=invalid)
        results[signal] = SignalResult(test, sweep, choices)
        entry["signals"][signal] = {
            "test_metrics": signal_metrics(conf[~mask], correct[~mask], bins, invalid),
            "test_baselines": {
                "slm_only": sweep.slm_only.as_dict(),
                "llm_only": sweep.llm_only.as_dict(),
                "oracle": sweep.oracle.as_dict(),
            },
            "choices": [
                {
                    "rule": c.rule,
                    "tau": c.tau,
                    "feasible": c.feasible,
                    "note": c.note,
                    "calibration": c.calibration.as_dict(),
                    "test": c.test.as_dict(),
                    "test_intervals": choice_intervals(
                        test, c.tau, invalid, seed=tau.seed, samples=k
                    ),
                    **(
                        {
                            "test_expected_pass_at_1": _expected_pass(
                                test, p_llm[~mask], c.tau, invalid
                            )
                        }
                        if p_llm is not None
                        else {}
                    ),  # fmt: skip
                }
                for c in choices
            ],  # fmt: skip
        }
    return GroupResult(entry, results, reliability)


def cost_per_question(rows: list[dict]) -> dict:
    """The regime of a group's (test) rows: the mean cost per question of SLM only and of LLM
    only (USD), their ratio `slm_vs_llm` (None when the LLM costs nothing), each side's mean
    prompt and completion tokens, and the LLM's usage sources. Pure."""
    if not rows:
        return {}
    mean = {key: float(np.mean([r[key] for r in rows])) for key in (
        "slm_cost", "llm_cost", "slm_prompt_tokens", "slm_completion_tokens",
        "llm_prompt_tokens", "llm_completion_tokens")}  # fmt: skip
    return {
        "slm_only": mean["slm_cost"],
        "llm_only": mean["llm_cost"],
        "slm_vs_llm": mean["slm_cost"] / mean["llm_cost"] if mean["llm_cost"] > 0 else None,
        "tokens": {
            side: {
                "prompt": mean[f"{side}_prompt_tokens"],
                "completion": mean[f"{side}_completion_tokens"],
            }
            for side in ("slm", "llm")
        },  # fmt: skip
        "llm_usage_source": sorted({str(r["llm_usage_source"]) for r in rows}),
    }


def _expected_pass(test: CascadeData, p_llm: np.ndarray, tau: float, invalid: float) -> float:
    """The cascade's pass@1 at `tau` in expectation over the simulated LLM's draws (its chance
    `p_llm` [Q] of being right is known): the SLM's answers where kept, p where deferred."""
    defer = defer_mask(test.confidence, tau, invalid)
    return float(np.where(defer, p_llm, test.slm_correct).mean())


def signal_metrics(conf: np.ndarray, correct: np.ndarray, bins: int, invalid: float) -> dict:
    """A signal's calibration on questions [Q]: ECE (equal-width and equal-mass), Brier, AUROC
    (None when every answer is right or every one wrong) and the share of valid values; a NaN
    value counts as `invalid`, as in the sweep."""
    valid = ~np.isnan(conf)
    m = calibration_summary(
        correct, np.nan_to_num(conf).astype(np.float32), valid, None,
        n_bins=bins, invalid_confidence=invalid,
    )  # fmt: skip
    keys = ("n", "confidence_valid_rate", "mean_confidence", "ece", "brier", "auroc")
    out = {k: m[k] for k in keys}
    effective = np.where(valid, conf, invalid).astype(np.float32)
    for name, fn in (("ece_equal_mass", metrics_lib.equal_mass_ece), ("aurc", metrics_lib.aurc),
                     ("excess_aurc", metrics_lib.excess_aurc)):  # fmt: skip
        value = float(fn(effective, correct))
        out[name] = round(value, 6) if np.isfinite(value) else None
    out["distinct_values"] = int(np.unique(conf[valid]).size)
    return out


def evaluation_metrics(
    slm: dict, bins: int, invalid: float, samples_drawn: int, samples: int = 1
) -> dict:
    """`eval/metrics.json`: per dataset pass@1 (mean@k with `samples` = k per question), format
    rate, ECE, Brier, AUROC (verbalized and AvgProb), reliability bins, and 95% bootstrap
    intervals over questions (a question's k samples together) of pass@1, ECE, Brier, AUROC,
    AURC and equal-mass ECE. Pure."""
    metrics = {"slm_samples_drawn": samples_drawn, "samples_per_question": samples,
               "datasets": {}}  # fmt: skip
    for name, rows in slm.items():
        m = _calibration(rows, bins, invalid)
        m["avgprob_auroc"] = _avgprob_auroc(rows)
        correct = np.array([r["correct"] for r in rows], bool).reshape(-1, samples)
        conf = np.where(np.isnan(c := confidences(rows)), invalid, c).reshape(-1, samples)
        m["intervals"] = {
            key: iv.to_dict()
            for key, iv in calibration_intervals(correct, conf, n_bins=bins, selective=True).items()
        }
        metrics["datasets"][name] = m
    return metrics


def _calibration(rows, n_bins: int, invalid: float) -> dict:
    return calibration_summary(
        np.array([r["correct"] for r in rows], bool),
        np.array([r["confidence"] or 0.0 for r in rows], np.float32),
        np.array([r["confidence"] is not None for r in rows], bool),
        np.array([r["format_ok"] for r in rows], bool),
        n_bins=n_bins,
        invalid_confidence=invalid,
    )


def _avgprob_auroc(rows):
    p = np.array([np.nan if r["avgprob"] is None else r["avgprob"] for r in rows])
    c = np.array([r["correct"] for r in rows], bool)
    if c.all() or not c.any():
        return None
    return round(float(auroc(np.nan_to_num(p), c)), 6)


def confidences(rows, key: str = "confidence") -> np.ndarray:
    return np.array([np.nan if r[key] is None else r[key] for r in rows], np.float64)

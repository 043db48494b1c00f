"""The cascade at a fixed threshold: the LLM is asked only for the questions the SLM defers.

    corea-jax cascade --config=configs/FILE.py --workdir=DIR --config.tau.fixed=0.7

The sweep mode (`pipeline.run`) asks the LLM every question once, so that every tau, rule and
baseline is a pure function of the answers; that is the right cost for choosing tau, and the
wrong one for *using* a tau chosen already (offline, or by `corea-jax serve`'s operator). Here
the SLM answers every question (the same cache as the sweep mode: `DIR/slm/`), a question goes
to the LLM when its effective confidence is below `tau.fixed` (an invalid confidence reads as
`tau.invalid_confidence`, 0 by default: defer), and only those questions are sent (the same
LLM cache, `DIR/llm_cache.sqlite`, so a later sweep reuses them). No calibration split is
needed: every question is reported. LLM-only accuracy and cost are unknown in this mode (most
questions never reach the LLM) and the report says so instead of estimating them.

Outputs (atomic, as in the sweep mode): `questions.jsonl` (LLM fields null where not deferred),
`summary.json` (mode "fixed", tau, per dataset and pooled: pass@1, average cost, LLM share,
LLM calls), `summary.csv` and `report.md`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from corea_jax.atomic_files import write_atomic
from corea_jax.cascade import report
from corea_jax.cascade.cache import redact_url
from corea_jax.cascade.llm_answers import answer_with_llm
from corea_jax.cascade.settings import CascadeConfig
from corea_jax.cascade.sweep import defer_mask

_SLM_KEYS = ("answer", "correct", "format_ok", "prompt_tokens", "completion_tokens",
             "finish_reason", "text")  # fmt: skip
_LLM_KEYS = ("answer", "correct", "prompt_tokens", "completion_tokens", "usage_source", "error",
             "text")  # fmt: skip
CSV_FIELDS = ("group", "tau", "n", "pass_at_1", "avg_cost", "llm_fraction", "llm_calls")


def deferred(cfg: CascadeConfig, slm: dict) -> dict[str, np.ndarray]:
    """`{dataset: [Q] bool}`: which SLM answers go to the LLM at `tau.fixed`."""
    tau = cfg.tau
    return {
        name: defer_mask(
            np.array([np.nan if r["confidence"] is None else r["confidence"] for r in rows]),
            tau.fixed,
            tau.invalid_confidence,
        )
        for name, rows in slm.items()
    }


def fixed_rows(cfg: CascadeConfig, questions, slm: dict, defer: dict, llm: dict) -> list[dict]:
    """One row per question: the SLM's answer and cost, and the LLM's where it was deferred.

    `llm[name]` holds the scored LLM rows of the deferred questions only, in question order."""
    prices = cfg.price_table()
    rows = []
    for name, (records, _) in questions.items():
        s_rows, asked = slm[name], iter(llm[name])
        s_cost = prices.cost(
            cfg.slm.price_name,
            [r["prompt_tokens"] for r in s_rows],
            [r["completion_tokens"] for r in s_rows],
        )
        for k, record in enumerate(records):
            s = s_rows[k]
            m = next(asked) if defer[name][k] else None
            l_cost = 0.0
            if m is not None:
                l_cost = float(
                    prices.cost(cfg.llm.model, [m["prompt_tokens"]], [m["completion_tokens"]])[0]
                )
            rows.append(
                {
                    "dataset": name,
                    "id": record.id,
                    "gold": record.answer,
                    "kind": record.kind,
                    "confidence": s["confidence"],
                    "deferred": bool(defer[name][k]),
                    **{f"slm_{key}": s[key] for key in _SLM_KEYS},
                    "slm_cost": float(s_cost[k]),
                    **{f"llm_{key}": (None if m is None else m[key]) for key in _LLM_KEYS},
                    "llm_cost": l_cost,
                    "correct": bool(m["correct"] if m is not None else s["correct"]),
                }
            )
    return rows


def fixed_point(rows: list[dict]) -> dict:
    """The cascade over `rows` (pure): pass@1, average cost per question, LLM share."""
    return {
        "n": len(rows),
        "pass_at_1": float(np.mean([r["correct"] for r in rows])),
        "avg_cost": float(np.mean([r["slm_cost"] + r["llm_cost"] for r in rows])),
        "llm_fraction": float(np.mean([r["deferred"] for r in rows])),
        "slm_pass_at_1": float(np.mean([r["slm_correct"] for r in rows])),
        "llm_calls": int(sum(r["deferred"] for r in rows)),
    }


def fixed_summary(cfg: CascadeConfig, rows: list[dict], header: dict) -> dict:
    """`summary.json` of the fixed mode (pure)."""
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    groups = {name: fixed_point([r for r in rows if r["dataset"] == name]) for name in names}
    if len(names) > 1:
        groups["all"] = fixed_point(rows)
    llm = cfg.llm
    return {
        "mode": "fixed",
        "tau": cfg.tau.fixed,
        "invalid_confidence": cfg.tau.invalid_confidence,
        "simulated_llm": llm.simulated,
        "slm": {"model_dir": header["model_dir"], "price_name": cfg.slm.price_name},
        "llm": {
            "model": llm.model,
            "base_url": "simulated (in-process)" if llm.simulated else redact_url(llm.base_url),
        },
        "llm_calls": header["llm_calls"],
        "slm_samples_drawn": header["slm_samples_drawn"],
        "groups": groups,
    }


def fixed_markdown(summary: dict) -> str:
    llm = summary["llm"]["model"]
    title = f"SIMULATED LLM ({llm})" if summary["simulated_llm"] else llm
    lines = [
        f"# COREA cascade at a fixed tau = {summary['tau']:g}: SLM "
        f"{summary['slm']['price_name']} -> {title}",
        "",
        *(
            ["**The LLM is SIMULATED**: no real large model is measured here.", ""]
            if summary["simulated_llm"]
            else []
        ),
        "The LLM was called only for the questions the SLM deferred (confidence below tau; an "
        f"invalid confidence counts as {summary['invalid_confidence']:g}). LLM-only accuracy "
        "and cost are not measured in this mode: run without `tau.fixed` for the sweep, the "
        "baselines and the tau rules.",
        "",
        "| group | questions | cascade pass@1 | SLM pass@1 | LLM% (= LLM calls) | avg cost (USD) |",
        "|---|---|---|---|---|---|",
    ]
    for group, p in summary["groups"].items():
        lines.append(
            f"| {group} | {p['n']} | {100 * p['pass_at_1']:.1f}% | "
            f"{100 * p['slm_pass_at_1']:.1f}% | {100 * p['llm_fraction']:.1f}% "
            f"({p['llm_calls']}) | {p['avg_cost']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def write_fixed(workdir: Path, rows: list[dict], summary: dict) -> None:
    write_atomic(workdir / "questions.jsonl", report.jsonl_text(rows))
    write_atomic(workdir / "summary.json", json.dumps(summary, indent=2) + "\n")
    csv_rows = [{"group": g, "tau": summary["tau"], **p} for g, p in summary["groups"].items()]
    write_atomic(workdir / "summary.csv", report.csv_text(csv_rows, CSV_FIELDS))
    write_atomic(workdir / "report.md", fixed_markdown(summary))


def ask_deferred(cfg: CascadeConfig, workdir: Path, questions, defer: dict, count_tokens):
    """The LLM's answers to the deferred questions only: `({name: [LLMResponse]}, stats)`."""
    subset = {
        name: (tuple(r for r, d in zip(records, defer[name], strict=True) if d), templates)
        for name, (records, templates) in questions.items()
    }
    return subset, *answer_with_llm(
        cfg.llm, subset, workdir / "llm_cache.sqlite", count_tokens, cfg.seed
    )

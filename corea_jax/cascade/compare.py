"""The paper's comparison table from one command: `corea-jax compare`.

    corea-jax compare --config=configs/compare_ood_math.py --workdir=DIR \
        --config.slms.original=Qwen2.5-7B-Instruct --config.slms.rlvr=RLVR/export \
        --config.slms.brier=BRIER/export --config.slms.corea=COREA/export

Each SLM of `slms` runs the cascade once (`pipeline.run` in `DIR/slms/NAME/`, with that
directory's full report) with the signals its systems need; the LLM answers every question once
for all of them (one cache, `DIR/llm_cache.sqlite`), and each SLM's answers are sampled once and
shared by its rows (RLVR's verbalized, AvgProb, probe and router rows read one SLM pass). Two
SLM names with the same directory share one run.

A row of the table is a *system*: an SLM with a deferral signal, at the tau that `rule` (default
the paper's, tau = the LLM's pass@1 on the calibration split) chose on the calibration split,
reported on the test split; plus each SLM alone and the LLM alone. The default rows are the
paper's: SLM-Verb, RLVR-SLM-Verb, RLVR-SLM-AvgProb, RLVR-SLM-Probe, Router+RLVR-SLM,
Brier-SLM-Verb, COREA. Columns, per dataset group (each dataset, and "all" pooled): pass@1,
LLM%, cost per question and relative to LLM-only (both with 95% bootstrap intervals over the
test questions), and the signal's ECE and AUROC on the test split. Written as
`DIR/compare.md`, `compare.csv` and `compare.json`; every number is read from the SLM's
`summary.json`, so it equals that cascade's per-signal sweep.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path

from corea_jax.atomic_files import write_atomic
from corea_jax.cascade.report import csv_text
from corea_jax.cascade.settings import SIGNALS, CascadeConfig
from corea_jax.errors import CoreaError

# The paper's collaboration systems: (row name, SLM, signal).
PAPER_SYSTEMS = (
    ("SLM-Verb", "original", "verbalized"),
    ("RLVR-SLM-Verb", "rlvr", "verbalized"),
    ("RLVR-SLM-AvgProb", "rlvr", "avgprob"),
    ("RLVR-SLM-Probe", "rlvr", "probe"),
    ("Router+RLVR-SLM", "rlvr", "router"),
    ("Brier-SLM-Verb", "brier", "verbalized"),
    ("COREA", "corea", "verbalized"),
)
# The SLM-alone rows, in the paper's naming.
SLM_ROWS = {"original": "SLM", "rlvr": "RLVR-SLM", "brier": "Brier-SLM", "corea": "COREA-SLM"}
_KEYS = ("system", "kind", "slm", "signal", "group", "n_test")
CSV_FIELDS = ("system", "kind", "slm", "signal", "group", "n_test", "tau", "pass_at_1",
              "pass_at_1_low", "pass_at_1_high", "llm_fraction", "avg_cost", "cost_vs_llm",
              "cost_vs_llm_low", "cost_vs_llm_high", "ece", "auroc", "note")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """`slms`: (name, model directory) pairs; `systems`: (row name, SLM name, signal) triples;
    `rule`: the tau rule whose operating point the table shows (one of `cascade.tau.rules`);
    `cascade`: the settings every SLM's cascade shares (its `slm.path` and `signals.use` are
    set per SLM)."""

    slms: tuple[tuple[str, str], ...]
    systems: tuple[tuple[str, str, str], ...]
    cascade: CascadeConfig
    rule: str = "llm_pass"

    def __post_init__(self):
        names = [n for n, _ in self.slms]
        if not self.systems:
            raise CoreaError("systems: empty; name at least one (row, slm, signal)")
        for row, slm, signal in self.systems:
            if slm not in names:
                raise CoreaError(f"systems: {row!r} uses SLM {slm!r}, not one of slms {names}")
            if signal not in SIGNALS:
                raise CoreaError(f"systems: {row!r} has signal {signal!r}; choose from {SIGNALS}")
        for name, path in self.slms:
            if not path and not self.cascade.slm.scratch.enabled:
                raise CoreaError(f"slms.{name}: empty; set --config.slms.{name}=MODEL_DIR")
        if self.rule not in self.cascade.tau.rules:
            raise CoreaError(f"rule={self.rule!r}: not among cascade.tau.rules")

    @classmethod
    def from_config(cls, config) -> CompareConfig:
        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        unknown = sorted(set(c) - {"slms", "systems", "rule", "cascade"})
        if unknown:
            raise CoreaError(f"unknown config key {', '.join(unknown)} (known: slms, systems, "
                             "rule, cascade)")  # fmt: skip
        return cls(
            slms=tuple((str(k), str(v)) for k, v in (c.get("slms") or {}).items()),
            systems=tuple(tuple(s) for s in c.get("systems") or PAPER_SYSTEMS),
            cascade=CascadeConfig.from_config(c["cascade"]),
            rule=c.get("rule", cls.rule),
        )

    def slm_order(self) -> list[str]:
        """SLM names in the order the systems first use them (then any unused ones)."""
        used = list(dict.fromkeys(slm for _, slm, _ in self.systems))
        return used + [n for n, _ in self.slms if n not in used]

    def signals_of(self, slm: str) -> tuple[str, ...]:
        """The signals `slm`'s cascade computes: those its systems use, verbalized first (the
        SLM-alone row reports its stated confidence's calibration)."""
        used = {s for _, name, s in self.systems if name == slm}
        return tuple(s for s in SIGNALS if s in used or s == "verbalized")


def run(cfg: CompareConfig, workdir, *, with_rows: bool = False):
    """Every SLM's cascade (cached), then the table. Returns the table as a dict, or, with
    `with_rows`, `(table, {slm name: (its question rows, its summary)})`."""
    from corea_jax.cascade import pipeline

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    by_path: dict[str, list[str]] = {}  # the same model under several names: one run
    paths = dict(cfg.slms)
    for name in cfg.slm_order():
        path = paths[name]
        key = str(Path(path).resolve()) if path else f"scratch:{name}"
        by_path.setdefault(key, []).append(name)
    summaries, rows = {}, {}
    for names in by_path.values():
        name, path = names[0], paths[names[0]]
        used = {s for n in names for s in cfg.signals_of(n)}
        signals = dataclasses.replace(
            cfg.cascade.signals, use=tuple(s for s in SIGNALS if s in used)
        )
        slm = dataclasses.replace(cfg.cascade.slm, path=path)
        one = dataclasses.replace(cfg.cascade, slm=slm, signals=signals)
        print(f"\n=== compare: SLM {', '.join(names)} ({path or 'scratch'})", flush=True)
        out = pipeline.run(one, workdir / "slms" / name, workdir / "llm_cache.sqlite",
                           with_rows=True)  # fmt: skip
        summaries.update(dict.fromkeys(names, out[1]))
        rows.update(dict.fromkeys(names, out))
    table = compare_table(cfg, summaries)
    write_compare(workdir, table)
    print(f"wrote {workdir / 'compare.md'}, compare.csv and compare.json")
    return (table, rows) if with_rows else table


def _choice(signal_entry: dict, rule: str) -> dict | None:
    for c in signal_entry["choices"]:
        if c["rule"].split("(")[0] == rule:
            return c
    return None


def _interval(intervals: dict, name: str) -> tuple[float | None, float | None]:
    iv = intervals.get(name) or {}
    return iv.get("low"), iv.get("high")


def compare_table(cfg: CompareConfig, summaries: Mapping[str, dict]) -> dict:
    """`{"rule", "simulated_llm", "groups", "rows": [row]}` from each SLM's cascade summary:
    one row per (system, group), LLM-only and each SLM alone first. Pure."""
    first = summaries[cfg.slms[0][0]]
    groups = list(first["groups"])
    rows = []
    for group in groups:
        base = first["groups"][group]["signals"]["verbalized"]
        llm = base["test_baselines"]["llm_only"]
        n_test = first["groups"][group]["n"] - first["groups"][group]["n_calibration"]
        rows.append(_row("LLM", "llm", "", "", group, n_test, llm, llm["avg_cost"]))
        for name in cfg.slm_order():
            entry = summaries[name]["groups"][group]["signals"]["verbalized"]
            point = entry["test_baselines"]["slm_only"]
            metrics = entry["test_metrics"]
            rows.append(_row(SLM_ROWS.get(name, f"{name} SLM"), "slm", name, "verbalized",
                             group, n_test, point, llm["avg_cost"], metrics))  # fmt: skip
        for system, name, signal in cfg.systems:
            entry = summaries[name]["groups"][group]["signals"][signal]
            choice = _choice(entry, cfg.rule)
            fitted = summaries[name].get("fitted_signals", {}).get(signal, {})
            if choice is None:
                raise CoreaError(f"rule {cfg.rule!r}: not in SLM {name}'s summary")
            row = _row(system, "cascade", name, signal, group, n_test, choice["test"],
                       llm["avg_cost"], entry["test_metrics"],
                       choice.get("test_intervals") or {}, choice["tau"])  # fmt: skip
            if not fitted.get("fitted", True):  # no probe: nothing to report but why
                row = {k: (v if k in _KEYS else None) for k, v in row.items()}
                row["note"] = f"not fitted: {fitted.get('note', '')}"
            rows.append(row)
    return {
        "rule": cfg.rule,
        "simulated_llm": bool(first.get("simulated_llm")),
        "llm": first["llm"]["model"],
        "groups": groups,
        "rows": rows,
    }


def _row(system, kind, slm, signal, group, n_test, point, llm_cost, metrics=None,
         intervals=None, tau=None, note=""):  # fmt: skip
    cost_vs = point["avg_cost"] / llm_cost - 1 if llm_cost else None
    p_low, p_high = _interval(intervals or {}, "pass_at_1")
    c_low, c_high = _interval(intervals or {}, "cost_vs_llm")
    metrics = metrics or {}
    return {
        "system": system, "kind": kind, "slm": slm, "signal": signal, "group": group,
        "n_test": n_test, "tau": tau, "pass_at_1": point["pass_at_1"], "pass_at_1_low": p_low,
        "pass_at_1_high": p_high, "llm_fraction": point["llm_fraction"],
        "avg_cost": point["avg_cost"], "cost_vs_llm": cost_vs, "cost_vs_llm_low": c_low,
        "cost_vs_llm_high": c_high, "ece": metrics.get("ece"), "auroc": metrics.get("auroc"),
        "note": note,
    }  # fmt: skip


def _pct(x, signed=False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def _with_interval(x, low, high, signed=False) -> str:
    if low is None or high is None:
        return _pct(x, signed)
    return f"{_pct(x, signed)} [{_pct(low, signed)}, {_pct(high, signed)}]"


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def compare_markdown(table: dict) -> str:
    """`compare.md`: one table per dataset group, the paper's rows in order."""
    md = ["# COREA and the paper's collaboration systems", ""]
    if table["simulated_llm"]:
        md += ["**The LLM is SIMULATED** (answers the gold answer at a set rate): no real large "
               "model is measured here.", ""]  # fmt: skip
    md += [
        f"LLM: {table['llm']}. Each cascade's tau is chosen on the calibration split by the "
        f"rule `{table['rule']}` and reported on the test split; brackets are 95% bootstrap "
        "intervals over the test questions. ECE and AUROC are those of the row's deferral "
        "signal (the stated confidence for an SLM alone).",
        "",
    ]
    for group in table["groups"]:
        rows = [r for r in table["rows"] if r["group"] == group]
        md += [
            f"## {group} ({rows[0]['n_test']} test questions)",
            "",
            "| system | tau | pass@1 % | LLM % | cost / 1k q (USD) | cost vs LLM-only % | ECE "
            "| AUROC |",
            "|---|---|---|---|---|---|---|---|",
        ]
        notes = []
        for r in rows:
            if r["note"]:
                notes.append(f"- {r['system']}: {r['note']}")
                md.append(f"| {r['system']} (not available, see below) |" + " n/a |" * 7)
                continue
            tau = "" if r["tau"] is None else f"{r['tau']:.3g}"
            name = r["system"]
            md.append(
                f"| {name} | {tau} | "
                f"{_with_interval(r['pass_at_1'], r['pass_at_1_low'], r['pass_at_1_high'])} | "
                f"{_pct(r['llm_fraction'])} | {1000 * r['avg_cost']:.4g} | "
                f"{_with_interval(r['cost_vs_llm'], r['cost_vs_llm_low'], r['cost_vs_llm_high'], True)} "  # noqa: E501
                f"| {_num(r['ece'])} | {_num(r['auroc'])} |"
            )
        md += ["", *notes, ""] if notes else [""]
    return "\n".join(md) + "\n"


def write_compare(workdir: Path, table: dict) -> None:
    """compare.md, compare.csv, compare.json in `workdir` (each written atomically)."""
    write_atomic(workdir / "compare.json", json.dumps(table, indent=2) + "\n")
    write_atomic(workdir / "compare.csv", csv_text(table["rows"], CSV_FIELDS))
    write_atomic(workdir / "compare.md", compare_markdown(table))

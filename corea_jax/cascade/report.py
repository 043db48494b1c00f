"""Cascade reports: a Markdown summary table and PNG plots, from plain arrays and dataclasses;
and the writers of a cascade run's and an evaluation's output files.

- `summary_table`: SLM only, LLM only, oracle, and each chosen tau (with random deferral at the
  same LLM% beside it), as pass@1, cost per 1,000 questions, cost relative to LLM only, LLM%.
- `plot_vs_tau`: pass@1, cost and LLM% against tau (three panels sharing the tau axis).
- `plot_pass_vs_cost`: pass@1 against cost per question for the cascade and every baseline
  (SLM only, LLM only, random deferral, the oracle curve and point), chosen taus marked.
- `plot_signals`: pass@1 against cost, one curve per confidence signal (verbalized, AvgProb,
  probe, router) on the same questions, each signal's tau by the first rule marked.
- `plot_reliability`: one reliability diagram per confidence signal (accuracy per confidence bin
  against the diagonal, bin counts underneath), ECE and AUROC in each title.
- `cost_line`: a group's cost per question of SLM only and of LLM only, their tokens and ratio
  (with what the LLM is sent and counted with, in `report.md`'s header).
- `write_cascade`: a `pipeline.CascadeResult` as `questions.jsonl`, `summary.json`,
  `summary.csv`, `report.md` and `report/GROUP/*`; `write_evaluation`: `corea-jax evaluate
  --config`'s `eval/` files. Every file (and the `report/` folder as a whole) is written beside
  its target and renamed into place, so a failure leaves what was there intact.

ECE, AUROC and the reliability bins come from `corea_jax.scoring.metrics.calibration_summary` (10
equal-width bins by default; invalid confidences count as 0, the paper's default). Plots use
matplotlib's `Figure` directly (Agg canvas, no pyplot state), so they are safe from any thread
and need no display.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from corea_jax.atomic_files import atomic_path, replace_dir, write_atomic
from corea_jax.cascade.intervals import interval_line
from corea_jax.cascade.sweep import CascadeData, OperatingPoint, Sweep, TauChoice, sweep_thresholds


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def _money(x: float) -> str:
    return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.4g}"


def _row(name: str, point: OperatingPoint, llm_cost: float) -> str:
    tau = "" if math.isnan(point.tau) else f"{point.tau:.3g}"
    rel = point.avg_cost / llm_cost - 1 if llm_cost > 0 else float("nan")
    rel_s = "n/a" if math.isnan(rel) else f"{100 * rel:+.1f}%"
    return (
        f"| {name} | {tau} | {_pct(point.pass_at_1)} | {_money(1000 * point.avg_cost)} | {rel_s} "
        f"| {_pct(point.llm_fraction)} |"
    )


def summary_table(sweep: Sweep, choices: Sequence[TauChoice] = (), title: str | None = None) -> str:
    """A Markdown table of the baselines and the chosen taus on the questions of `sweep`.

    `choices` should carry their test operating points (`report_on_test`) when `sweep` is the
    test split's sweep; a choice without one is shown at its calibration point.
    """
    llm_cost = sweep.llm_only.avg_cost
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| system | tau | pass@1 (%) | cost per 1k questions (USD) | cost vs LLM only | LLM% |",
        "|---|---|---|---|---|---|",
        _row("SLM only", sweep.slm_only, llm_cost),
        _row("LLM only", sweep.llm_only, llm_cost),
        _row("oracle deferral", sweep.oracle, llm_cost),
    ]
    slm, llm = sweep.slm_only, sweep.llm_only
    for choice in choices:
        point = choice.test if choice.test is not None else choice.calibration
        flag = "" if choice.feasible else " (constraint not met)"
        lines.append(_row(f"cascade, tau by {choice.rule}{flag}", point, llm_cost))
        f = point.llm_fraction
        random = OperatingPoint(
            float("nan"),
            (1 - f) * slm.pass_at_1 + f * llm.pass_at_1,
            slm.avg_cost + f * llm.avg_cost,
            f,
        )
        lines.append(_row("random deferral, same LLM%", random, llm_cost))
    return "\n".join(lines) + "\n"


def _figure(rows: int = 1, cols: int = 1, size=(6.4, 4.8), **kwargs):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs)
    return fig, axes


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_vs_tau(sweep: Sweep, path, choices: Sequence[TauChoice] = (), title: str = "") -> Path:
    """Pass@1, cost per 1k questions and LLM% against tau, with the LLM-only level dashed."""
    fig, axes = _figure(3, 1, size=(6.4, 7.2), sharex=True)
    panels = [
        ("pass@1 (%)", 100 * sweep.pass_at_1, 100 * sweep.llm_only.pass_at_1),
        ("cost per 1k q. (USD)", 1000 * sweep.avg_cost, 1000 * sweep.llm_only.avg_cost),
        ("LLM%", 100 * sweep.llm_fraction, None),
    ]
    for ax, (label, values, llm_level) in zip(axes[:, 0], panels, strict=True):
        ax.step(sweep.tau, values, where="post", color="C0", label="cascade")
        if llm_level is not None:
            ax.axhline(llm_level, color="C3", linestyle="--", label="LLM only")
        for i, choice in enumerate(choices):
            ax.axvline(choice.tau, color=f"C{i + 4}", linestyle=":", label=f"tau: {choice.rule}")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("tau (defer when confidence < tau)")
    axes[-1, 0].set_xlim(0, max(1.0, float(sweep.tau.max())))
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_pass_vs_cost(
    sweep: Sweep, path, choices: Sequence[TauChoice] = (), title: str = ""
) -> Path:
    """Pass@1 against cost per question: the cascade over tau and all baselines on one plot."""
    fig, axes = _figure()
    ax = axes[0, 0]
    order = np.argsort(sweep.llm_fraction, kind="stable")
    ax.plot(1000 * sweep.avg_cost, 100 * sweep.pass_at_1, "o-", ms=2.5, label="cascade (all tau)")
    ax.plot(
        1000 * sweep.random_avg_cost[order],
        100 * sweep.random_pass_at_1[order],
        "--",
        color="C7",
        label="random deferral (expected)",
    )
    ax.plot(
        1000 * sweep.oracle_avg_cost[order],
        100 * sweep.oracle_pass_at_1[order],
        ":",
        color="C2",
        label="oracle deferral, same LLM%",
    )
    for point, marker, color, name in (
        (sweep.slm_only, "s", "C1", "SLM only"),
        (sweep.llm_only, "D", "C3", "LLM only"),
        (sweep.oracle, "*", "C2", "oracle deferral"),
    ):
        ax.plot(1000 * point.avg_cost, 100 * point.pass_at_1, marker, color=color, ms=9, label=name)
    for i, choice in enumerate(choices):
        point = choice.test if choice.test is not None else choice.calibration
        ax.plot(
            1000 * point.avg_cost,
            100 * point.pass_at_1,
            "X",
            color=f"C{i + 4}",
            ms=10,
            label=f"tau={choice.tau:.3g} ({choice.rule})",
        )
    ax.set_xlabel("cost per 1k questions (USD)")
    ax.set_ylabel("pass@1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_signals(
    sweeps: Mapping[str, Sweep],
    path,
    choices: Mapping[str, TauChoice] | None = None,
    title: str = "",
) -> Path:
    """pass@1 against cost per question, one curve per confidence signal on the same questions
    (SLM only and LLM only marked once; each signal's first chosen tau marked on its curve)."""
    fig, axes = _figure()
    ax = axes[0, 0]
    for k, (name, sweep) in enumerate(sweeps.items()):
        order = np.argsort(sweep.avg_cost, kind="stable")
        color = f"C{k}"
        ax.plot(sweep.avg_cost[order], sweep.pass_at_1[order], "-", color=color, label=name)
        choice = (choices or {}).get(name)
        if choice is not None and choice.test is not None:
            ax.plot(choice.test.avg_cost, choice.test.pass_at_1, "o", color=color, ms=7)
    any_sweep = next(iter(sweeps.values()))
    for point, label, marker in ((any_sweep.slm_only, "SLM only", "s"),
                                 (any_sweep.llm_only, "LLM only", "^")):  # fmt: skip
        ax.plot(point.avg_cost, point.pass_at_1, marker, color="k", label=label)
    ax.set(xlabel="cost per question (USD)", ylabel="pass@1", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_reliability(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path,
    n_bins: int = 10,
    invalid_confidence: float = 0.0,
) -> Path:
    """Reliability diagrams, one panel per `name: (confidence [Q], correct [Q])`: accuracy per
    bin as bars, the bin's mean confidence as a red line (on the diagonal when calibrated).

    Confidence is NaN where invalid; such answers count as `invalid_confidence` (default 0).
    """
    from corea_jax.scoring.metrics import calibration_summary

    names = list(series)
    fig, axes = _figure(2, len(names), size=(4.0 * len(names), 5.2), height_ratios=(3, 1))
    for col, name in enumerate(names):
        confidence, correct = (np.asarray(a) for a in series[name])
        valid = ~np.isnan(confidence.astype(np.float64))
        summary = calibration_summary(
            correct,
            np.nan_to_num(confidence.astype(np.float64)),
            valid,
            n_bins=n_bins,
            invalid_confidence=invalid_confidence,
        )
        bins = summary["reliability"]
        lower = np.array([b["lower"] for b in bins], float)
        width = np.array([b["upper"] - b["lower"] for b in bins], float)
        acc = np.array([np.nan if b["accuracy"] is None else b["accuracy"] for b in bins])
        conf = np.array([np.nan if b["confidence"] is None else b["confidence"] for b in bins])
        count = np.array([b["count"] or 0 for b in bins], float)
        top, bottom = axes[0, col], axes[1, col]
        top.bar(lower, np.nan_to_num(acc), width, align="edge", edgecolor="k", label="accuracy")
        top.hlines(conf, lower, lower + width, colors="C3", lw=2.5, label="mean confidence")
        top.plot([0, 1], [0, 1], "k--", lw=1)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        ece, auc = summary["ece"], summary["auroc"]
        auc_s = f"{auc:.3f}" if auc is not None else "n/a"
        ece_s = f"{ece:.3f}" if ece is not None else "n/a"
        top.set_title(f"{name}\nECE {ece_s}, AUROC {auc_s}", fontsize=10)
        top.legend(fontsize=7, loc="upper left")
        bottom.bar(lower, count, width, align="edge", color="C7", edgecolor="k")
        bottom.set_xlim(0, 1)
        bottom.set_xlabel("stated confidence")
        bottom.set_ylabel("answers")
    return _save(fig, path)


def write_report(
    out_dir: str | os.PathLike,
    test: CascadeData,
    choices: Sequence[TauChoice] = (),
    *,
    title: str = "cascade",
    reliability: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    sweep: Sweep | None = None,
    invalid_confidence: float = 0.0,
    n_bins: int = 10,
) -> dict[str, Path]:
    """`summary.md`, `pass_cost_llm_vs_tau.png`, `pass_vs_cost.png` and `reliability.png` in
    `out_dir`, for the test split `test` (sweep computed unless given) and the chosen taus.
    `reliability` defaults to the SLM's confidence on `test`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if sweep is None:
        sweep = sweep_thresholds(test, invalid_confidence=invalid_confidence)
    if reliability is None:
        reliability = {"SLM confidence": (test.confidence, test.slm_correct)}
    paths = {
        "vs_tau": plot_vs_tau(sweep, out / "pass_cost_llm_vs_tau.png", choices, title),
        "pass_vs_cost": plot_pass_vs_cost(sweep, out / "pass_vs_cost.png", choices, title),
        "reliability": plot_reliability(
            reliability, out / "reliability.png", n_bins, invalid_confidence
        ),
    }
    text = summary_table(sweep, choices, title)
    text += f"\n{test.size} questions. " + "".join(
        f"![{key}]({path.name}) " for key, path in paths.items()
    )
    (out / "summary.md").write_text(text + "\n")
    paths["summary"] = out / "summary.md"
    return paths


# ---------------------------------------------------------------------------------------------
# Output files of a run

SUMMARY_CSV_FIELDS = ("group", "signal", "system", "rule", "tau", "pass_at_1", "avg_cost",
                      "cost_vs_llm", "llm_fraction")  # fmt: skip
EVAL_CSV_FIELDS = ("dataset", "n", "pass@1", "format_rate", "ece", "brier", "auroc")


def write_cascade(workdir: str | os.PathLike, result) -> None:
    """Writes a `pipeline.CascadeResult` into `workdir` (see the module docstring)."""
    workdir = Path(workdir)
    tmp = Path(tempfile.mkdtemp(dir=workdir, prefix=".report."))
    try:
        for group, g in result.groups.items():
            first = next(iter(g.signals.values()))  # the first of `signals.use`
            write_report(
                tmp / group, first.test, first.choices,
                title=f"{group} ({result.llm_title})", reliability=g.reliability,
                sweep=first.sweep, invalid_confidence=result.invalid_confidence,
                n_bins=result.bins,
            )  # fmt: skip
            if len(g.signals) > 1:
                plot_signals({k: s.sweep for k, s in g.signals.items()},
                             tmp / group / "signals.png",
                             {k: s.choices[0] for k, s in g.signals.items() if s.choices},
                             title=f"{group}: every confidence signal, test split")  # fmt: skip
        replace_dir(tmp, workdir / "report")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_atomic(workdir / "questions.jsonl", jsonl_text(result.rows))
    write_atomic(workdir / "summary.json", json.dumps(result.summary, indent=2) + "\n")
    write_atomic(workdir / "summary.csv", csv_text(summary_csv_rows(result), SUMMARY_CSV_FIELDS))
    write_atomic(workdir / "report.md", cascade_markdown(result))


def summary_csv_rows(result) -> list[dict]:
    """`summary.csv`: the test split's baselines and chosen taus, per group and signal."""
    rows = []
    for group, g in result.groups.items():
        for signal, s in g.signals.items():
            llm_cost = s.sweep.llm_only.avg_cost
            systems = [("slm_only", s.sweep.slm_only, ""), ("llm_only", s.sweep.llm_only, ""),
                       ("oracle", s.sweep.oracle, "")]  # fmt: skip
            for system, point, rule in systems + [("cascade", c.test, c.rule) for c in s.choices]:
                rows.append(
                    {"group": group, "signal": signal, "system": system, "rule": rule}
                    | point.as_dict()
                    | {"cost_vs_llm": point.avg_cost / llm_cost - 1 if llm_cost else None}
                )
    return rows


def cascade_markdown(result) -> str:
    """`report.md`: the header (SIMULATED when it is), each group's tables and plots."""
    slm_name = result.summary["slm"]["price_name"]
    banner = ["**The LLM is SIMULATED** (answers the gold answer at a set rate): no real large "
              "model is measured here.", ""]  # fmt: skip
    md = [
        f"# COREA cascade: SLM {slm_name} -> {result.llm_title}",
        "",
        *(banner if result.simulated else []),
        f"{len(result.rows)} questions; tau picked on the calibration split, reported on the test "
        f"split. Prices (USD per 1M input / output tokens): SLM {_price(result.prices['slm'])}, "
        f"LLM {_price(result.prices['llm'])}.",
        "",
    ]
    billing = result.summary.get("billing")
    if billing:
        reply = billing["llm_simulated_reply"]
        md += [
            f"The LLM is sent {_MESSAGES[billing['llm_messages']]}; its tokens are "
            f"{_USAGE[billing['llm_usage']]}"
            + (f"; the simulated LLM writes {_REPLIES[reply]}." if reply else "."),
            "",
        ]
    for group, g in result.groups.items():
        if g.entry.get("cost_per_question"):
            md += [cost_line(group, g.entry["cost_per_question"]), ""]
        for signal, s in g.signals.items():
            md.append(summary_table(s.sweep, s.choices, f"{group}: {signal} confidence"))
            md.append("95% intervals on the test split (bootstrap over questions):")
            md += [
                interval_line(c["rule"], c["test_intervals"])
                for c in g.entry["signals"][signal]["choices"]
            ]
            md.append("")
        md += [
            f"![{group}: pass@1, cost, LLM% vs tau](report/{group}/pass_cost_llm_vs_tau.png) "
            f"![{group}: pass@1 vs cost](report/{group}/pass_vs_cost.png) "
            f"![{group}: reliability](report/{group}/reliability.png)"
            + (f" ![{group}: signals](report/{group}/signals.png)" if len(g.signals) > 1 else ""),
            "",
        ]
    return "\n".join(md) + "\n"


_MESSAGES = {"slm": "the SLM's own messages", "system": "its own system text and the SLM's "
             "user text"}  # fmt: skip
_USAGE = {"slm": "counted with the SLM's tokenizer as the SLM's are (chat-template tokens "
          "on both sides)", "api": "as its endpoint reports them"}  # fmt: skip
_REPLIES = {"trace": "the synthetic task's reference traces (a stub reply elsewhere)",
            "stub": "18-token stub replies"}  # fmt: skip


def cost_line(group: str, cost: dict) -> str:
    """One line of `report.md`: a group's cost per question of SLM only and of LLM only (test
    split), with their tokens and ratio, so a reader sees the regime the savings come from."""
    tokens = cost["tokens"]

    def side(name: str) -> str:
        t = tokens[name]
        return (f"USD {cost[f'{name}_only']:.3g} ({t['prompt']:.0f} prompt + "
                f"{t['completion']:.0f} completion tokens)")  # fmt: skip

    ratio = cost["slm_vs_llm"]
    ratio_s = "n/a" if ratio is None else f"{ratio:.3f}"
    return (f"{group}, cost per question on the test split: SLM only {side('slm')}, LLM only "
            f"{side('llm')}; SLM only / LLM only = {ratio_s}.")  # fmt: skip


def write_evaluation(out_dir, slm: Mapping[str, list], metrics: dict, series, bins, invalid):
    """`corea-jax evaluate --config`'s files in `out_dir`: NAME.jsonl (the scored answers),
    reliability.png (`series`: name -> (confidence, correct)), metrics.json and metrics.csv."""
    out_dir = Path(out_dir)
    for name, rows in slm.items():
        write_atomic(out_dir / f"{name}.jsonl", jsonl_text(rows))
    with atomic_path(out_dir / "reliability.png") as tmp:
        plot_reliability(series, tmp, n_bins=bins, invalid_confidence=invalid)
    write_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    rows = [
        {k: m[k] for k in EVAL_CSV_FIELDS if k != "dataset"} | {"dataset": name}
        for name, m in metrics["datasets"].items()
    ]
    write_atomic(out_dir / "metrics.csv", csv_text(rows, EVAL_CSV_FIELDS))


def jsonl_text(rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def csv_text(rows, fields) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _price(p) -> str:
    return f"{p.input_per_mtok:g} / {p.output_per_mtok:g}"

"""The demo's plots: risk-coverage curves of each policy's stated confidence (AURC in the
legend), and COREA's cascade over tau across seeds (mean with the min-max band of the seeds).

Both read the compare stage's per-question rows through `tables.seed_arrays`; matplotlib
`Figure` objects are used directly (no pyplot state), as in `corea_jax.cascade.report`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from corea_jax.atomic_files import atomic_path
from corea_jax.cascade.report import _figure
from corea_jax.cascade.sweep import defer_mask
from corea_jax.demo.tables import SAMPLED, LLMView, effective, seed_arrays
from corea_jax.scoring import metrics

CURVES = (
    "SLM-Verb",
    "RLVR-SLM-Verb",
    "Brier-SLM-Verb",
    "COREA",
    "RLVR-SLM-Probe",
    "RLVR-SLM-Level lookup",
)


def write_plots(out_dir: Path, results, specs, group: str, llm: LLMView = SAMPLED) -> dict:
    """`{title: path relative to the demo's workdir}` of the plots written into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    first = {}
    for spec in specs:
        first.setdefault(spec["system"], spec)
    curves = {name: seed_arrays(results[first[name]["slm"]], first[name], group, llm)
              for name in CURVES if name in first}  # fmt: skip
    curves = {k: v for k, v in curves.items() if v["fitted"]}
    if curves:
        path = out_dir / "risk_coverage.png"
        with atomic_path(path) as tmp:
            plot_risk_coverage(curves, tmp)
        paths["risk-coverage (first seed)"] = f"report/{path.name}"
    corea = [s for s in specs if s["system"] == "COREA"]
    if corea:
        path = out_dir / "corea_tau_band.png"
        with atomic_path(path) as tmp:
            plot_tau_band([seed_arrays(results[s["slm"]], s, group, llm) for s in corea], tmp)
        paths["COREA over tau, seeds"] = f"report/{path.name}"
    return paths


def plot_risk_coverage(curves: dict[str, dict], path) -> Path:
    """Error rate among the answered against the share answered, most confident first."""
    fig, axes = _figure()
    ax = axes[0, 0]
    for name, a in curves.items():
        conf = effective(a["conf"], a["invalid"])
        coverage, risk = metrics.risk_coverage(conf, a["slm_correct"])
        value = float(metrics.aurc(conf, a["slm_correct"]))
        ax.plot(coverage, risk, "-o", ms=2, label=f"{name} (AURC {value:.3f})")
    ax.set(xlabel="coverage (share answered by the SLM)", ylabel="risk (error rate)",
           title="Risk-coverage of the SLM's confidence, test split")  # fmt: skip
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return Path(path)


TAU_GRID = np.linspace(0.0, 1.0, 101)


def plot_tau_band(per_seed: list[dict], path, grid=TAU_GRID) -> Path:
    """COREA's cascade pass@1 and cost vs LLM-only against tau: the mean over seeds, the band
    between the lowest and highest seed, each seed's chosen tau marked."""
    fig, axes = _figure(2, 1, size=(6.4, 6.4), sharex=True)
    passes, costs = [], []
    for a in per_seed:
        defer = defer_mask(a["conf"][None, :], grid[:, None], a["invalid"])  # [K, Q]
        passes.append(np.where(defer, a["llm_outcome"], a["slm_correct"]).mean(axis=1))
        cost = (a["slm_cost"] + np.where(defer, a["llm_cost"], 0.0)).mean(axis=1)
        costs.append(cost / a["llm_cost"].mean() - 1)
    for ax, values, label in ((axes[0, 0], passes, "cascade pass@1"),
                              (axes[1, 0], costs, "cost vs LLM-only")):  # fmt: skip
        v = np.array(values)
        ax.plot(grid, v.mean(axis=0), "-", label=f"mean of {len(values)} seeds")
        ax.fill_between(grid, v.min(axis=0), v.max(axis=0), alpha=0.3, label="seed range")
        for a in per_seed:
            ax.axvline(a["tau"], color="k", lw=0.5, ls=":")
        ax.set(ylabel=label)
        ax.legend(fontsize=8)
    axes[1, 0].set(xlabel="tau (dotted: each seed's chosen tau)")
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_level_curves(steps_by_policy: dict[str, list[dict]], path) -> Path:
    """Per policy (one panel each): every level's smoothed mean stated confidence (solid) and
    accuracy (dashed) over the GRPO steps; calibrated by level where the two meet."""
    from corea_jax.demo.training import level_curves, smooth

    n = len(steps_by_policy)
    fig, axes = _figure(n, 1, size=(6.4, 3.2 * n), sharex=True)
    for i, (name, steps) in enumerate(steps_by_policy.items()):
        ax = axes[i, 0]
        for k, (level, c) in enumerate(level_curves(steps).items()):
            color = f"C{k % 10}"
            ax.plot(c["step"], smooth(c["confidence"]), "-", color=color, label=level)
            ax.plot(c["step"], smooth(c["accuracy"]), "--", color=color)
        ax.set(ylabel="confidence (-) / accuracy (--)", title=name, ylim=(0, 1.02))
        ax.legend(fontsize=6, ncol=5, loc="lower left")
    axes[n - 1, 0].set(xlabel="GRPO step (trailing mean of 15 steps)")
    fig.savefig(path, dpi=80)
    return Path(path)


def write_level_curves(out_dir: Path, steps_by_policy: dict[str, list[dict]]) -> dict:
    """The per-level curves plot, when the runs logged levels."""
    steps_by_policy = {k: v for k, v in steps_by_policy.items() if v}
    if not steps_by_policy:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "level_curves.png"
    with atomic_path(path) as tmp:
        plot_level_curves(steps_by_policy, tmp)
    return {"per-level confidence and accuracy over GRPO steps (seed 0)": f"report/{path.name}"}

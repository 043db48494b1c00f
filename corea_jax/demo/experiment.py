"""`corea-jax demo`: the whole method end to end on the synthetic task, offline, on a CPU.

    from corea_jax.demo import DemoConfig, run
    run(DemoConfig.from_config(load_config("configs/demo.py")), "workdirs/demo")

Stages (each is skipped when its output exists, so re-running with the same workdir resumes):
  1. warm-up (`stages.warm_start`): the SFT warm start, bundled while its settings hold;
  2. policies (`stages.train_policies`): every reward preset x seed with GRPO from it;
  3. cascades: `corea_jax.cascade.compare` runs every SLM (the warm start too) once with the
     signals its systems need (verbalized, AvgProb, probe, router) against a SIMULATED LLM
     (in-process, behind the same `LLMClient` as a real endpoint; it knows the gold answers and
     is right with a known probability that falls with the question's digit work), which
     answers every question once for all of them;
  4. greedy decoding of every SLM on the test questions (`stages.greedy_metrics`);
  5. `analyse`: the headline over seeds with question x seed bootstrap intervals (`tables`),
     the claims (`claims`), the cost regime, the cascade at three LLM strengths (`strengths`),
     the seed table, per-level calibration and plots (`plots`); `experiment.json` holds every
     figure and `report.md` shows them (`report`). The headline is printed at the end.
Pointing `--config.cascade.llm.simulated=false` and `--config.cascade.llm.base_url=...` at a
real endpoint replaces the simulated LLM with no code change (the figures are then sampled).
`--config.mode=tune` runs the validation search instead (`corea_jax.demo.tuning`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from corea_jax.atomic_files import write_atomic
from corea_jax.demo import claims as claims_lib
from corea_jax.demo import plots as plots_lib
from corea_jax.demo import report as report_lib
from corea_jax.demo import stages, strengths, tables, training
from corea_jax.demo.settings import DemoConfig

# Systems whose cascade is shown at every LLM strength: the trained verbalized policies and
# the baselines that know the level or the hidden states.
STRENGTH_SIGNALS = ("verbalized", "level", "probe")
CASCADE_STATS = ("cascade_pass", "pass_vs_llm", "llm_fraction", "cost_vs_llm")


def run(config: DemoConfig, workdir: str | Path, warmup_only: bool = False) -> Path:
    """Runs the stages into `workdir`; returns `report.md` (or `tune.md`, or the warm start)."""
    from corea_jax.cascade.compare import CompareConfig
    from corea_jax.cascade.compare import run as compare_run

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    if config.mode == "tune" and not warmup_only:
        from corea_jax.demo import tuning

        tuning.run(config, workdir)
        return workdir / "tune.md"
    warm_dir = stages.warm_start(config, workdir)
    if warmup_only:
        print(f"warm start: {warm_dir}", flush=True)
        return warm_dir

    policies = stages.train_policies(config, warm_dir, workdir)
    slms = {tables.WARM: warm_dir, **policies}
    specs = tables.system_specs(config.policies, config.seeds)
    compare = CompareConfig(
        slms=tuple((name, str(path)) for name, path in slms.items()),
        systems=tables.compare_systems(specs),
        cascade=config.cascade,
        rule=tables.RULE,
    )
    stages.stage("3/5 cascades: every SLM with every signal it needs, one LLM pass", False)
    compare_dir = workdir / "compare"
    _, cascades = compare_run(compare, compare_dir, with_rows=True)
    results = {name: tables.SLMResult(tuple(rows), summary)
               for name, (rows, summary) in cascades.items()}  # fmt: skip
    greedy = stages.greedy_metrics(config, slms, workdir) if config.greedy else {}

    stages.stage("5/5 report", False)
    experiment = analyse(config, results, specs)
    group = next(iter(config.cascade.datasets)).name
    plots = plots_lib.write_plots(
        workdir / "report", results, specs, group, tables.expected_view(results)
    )
    run_dirs = {name: path.parent for name, path in policies.items()}
    first_seed = {name: training.read_metrics(d) for name, d in run_dirs.items()
                  if name.endswith(f"-s{config.seeds[0]}")}  # fmt: skip
    plots |= plots_lib.write_level_curves(workdir / "report", first_seed)
    experiment |= {"greedy": greedy, "training": training.training_summary(run_dirs),
                   "seconds": time.time() - start, "peak_memory_gb": peak_memory_gb()}  # fmt: skip
    write_atomic(workdir / "experiment.json", json.dumps(experiment, indent=2) + "\n")
    report = workdir / "report.md"
    write_atomic(report, report_lib.report_text(experiment, plots))
    print("\n" + report_lib.headline_table(experiment["rows"], experiment["simulated"]), flush=True)
    print("\n" + "\n".join(experiment["claims"]), flush=True)
    print(f"\nwrote {report}", file=sys.stderr)
    return report


def analyse(config: DemoConfig, results: dict, specs: list[dict]) -> dict:
    """Every figure of the report from the cascades' rows (in memory): a JSON-ready dict."""
    group = next(iter(config.cascade.datasets)).name
    view = tables.expected_view(results)
    n_boot = config.bootstrap
    rows = tables.headline_rows(results, specs, group, view, n_boot=n_boot)
    fits = {name: r.summary["fitted_signals"] for name, r in results.items()
            if r.summary.get("fitted_signals")}  # fmt: skip
    return {
        "simulated": config.cascade.llm.simulated,
        "setup": setup_lines(config, rows),
        "billing": billing_text(config),
        "rows": rows,
        "levels": tables.level_rows(results, specs, group),
        "claims": claims_lib.claim_lines(results, specs, group, rows, view, n_boot=n_boot),
        "costs": cost_regime(results, group),
        "strengths": strength_rows(config, results, specs, group),
        "fits": fits,
    }


def strength_rows(config: DemoConfig, results: dict, specs: list[dict], group: str) -> list:
    """The cascade figures and joint claim of each `STRENGTH_SIGNALS` system at each strength."""
    out = []
    for s in strengths.strengths(config.cascade, results, specs, group, config.llm_gaps):
        entry = {"name": s.view.name, "gap": s.gap, "decay": s.decay, "note": s.note,
                 "llm_pass_calibration": s.llm_pass_calibration, "systems": []}  # fmt: skip
        if not s.note:
            for system, mine in tables.by_system(specs).items():
                if mine[0]["signal"] not in STRENGTH_SIGNALS or mine[0]["preset"] == "warm":
                    continue
                per_seed = tables.system_arrays(results, mine, group, s.view)
                if not all(a["fitted"] for a in per_seed):
                    continue
                stats = tables.system_stats(per_seed, n_boot=config.bootstrap,
                                            names=CASCADE_STATS)  # fmt: skip
                entry["systems"].append({"system": system, "stats": stats,
                                         "joint": joint_outcome(stats)})  # fmt: skip
        out.append(entry)
    return out


def joint_outcome(stats: dict) -> str:
    return claims_lib.joint_claim(stats, claims_lib.CASCADE_PARTS)[1]


def cost_regime(results: dict, group: str) -> list[dict]:
    """Per SLM, the mean cost and tokens per test question of SLM-only and of LLM-only."""
    out = []
    for name, result in results.items():
        rows = [r for r in result.rows
                if r["split"] == "test" and (group == "all" or r["dataset"] == group)]  # fmt: skip

        def mean(key, rows=rows):
            return float(np.mean([r[key] or 0 for r in rows]))

        slm, llm = mean("slm_cost"), mean("llm_cost")
        out.append({
            "slm": name, "slm_cost": slm, "llm_cost": llm, "ratio": slm / llm if llm else None,
            "slm_prompt_tokens": mean("slm_prompt_tokens"),
            "slm_completion_tokens": mean("slm_completion_tokens"),
            "llm_prompt_tokens": mean("llm_prompt_tokens"),
            "llm_completion_tokens": mean("llm_completion_tokens"),
        })  # fmt: skip
    return out


def billing_text(config: DemoConfig) -> str:
    """What each side is sent and how its tokens are counted, in a sentence."""
    llm, slm = config.cascade.llm, config.cascade.slm
    sent = ("the LLM is sent the SLM's own messages (its prompt template, here the bare "
            "question)" if llm.messages == "slm"
            else "the LLM is sent a system text and the SLM's user text")  # fmt: skip
    counted = ("both sides' prompts and replies are counted with the SLM's tokenizer, chat "
               "template tokens included" if llm.billed_usage == "slm"
               else "the LLM is billed by the usage its endpoint reports")  # fmt: skip
    what = ("the task's reference trace (its answer right or wrong)"
            if llm.simulated_reply == "trace" else "a short stub")  # fmt: skip
    reply = f"; the simulated LLM replies with {what}" if llm.simulated else ""
    return f"{sent}; {counted}{reply}; priced as SLM {slm.price_name}, LLM {llm.model}"


def setup_lines(config: DemoConfig, rows: list[dict]) -> list[str]:
    run, e = config.rl.run, config.cascade
    first = next(r for r in rows if r["fitted"])
    settings = ", ".join(f"{p} {config.learning_rate(p):g} / {config.std_scaling(p)}"
                         for p in config.policies)  # fmt: skip
    seeds = ", ".join(str(s) for s in config.seeds)
    return [
        "- SLMs: one over-confident SFT warm start (SLM-Verb is the warm start itself), then "
        f"{', '.join(config.policies)} policies trained from it with GRPO ({run.train.steps} "
        f"steps x {run.train.prompts_per_step} prompts x G={run.rollout.group_size}; learning "
        "rate / advantage std scaling per reward, configs/demo.py says where each comes from: "
        f"{settings}), seeds {seeds}: within a seed only the reward differs (same data order, "
        "same rollout draws).",
        "- Decoding matched to training: each SLM answers at the rollout temperature "
        f"({e.slm.temperature:g}), {e.slm.samples} sample(s) per question; greedy decoding is "
        "the second table.",
        f"- Questions: the synthetic task's test problems ({first['n_test']} test questions, "
        "duplicates removed); tau is chosen on a separate calibration part (problems hashed "
        "apart) by the paper's rule (tau = the LLM's pass@1 there). No setting was chosen by "
        "looking at these questions (configs/demo.py says where each comes from).",
    ]


def peak_memory_gb() -> float:
    """Peak resident memory of this process and its finished children (grading workers), GB."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round((own + children) / 1024**2, 2)  # ru_maxrss is in KiB on Linux

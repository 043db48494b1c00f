"""`corea-jax demo`: the whole method end to end on the synthetic task, offline, on a CPU.

Stages (each is skipped when its output exists, so re-running with the same workdir resumes):
  1. warm-up: a tiny Qwen2-architecture model built from scratch (its own BPE tokenizer and
     ChatML template) is trained with SFT on reference traces of the synthetic task. Every
     trace states the same high confidence (`train.sft_confidence`, 0.9 by default), so the
     warm model is over-confident, as real instruction-tuned SLMs are.
  2. policies: RLVR, Brier and COREA (L1) are trained with the real GRPO trainer from that same
     warm start, with the same seeds and budgets; only the reward preset differs.
  3. cascade: each policy answers the synthetic calibration+test questions, a SIMULATED LLM
     (in-process, behind the same `LLMClient` as a real endpoint; it knows the gold answers and
     is right at a documented accuracy per difficulty level, see `configs/demo.py`) answers them
     too, and the real cascade evaluation runs (threshold sweep, tau rules, baselines, costs,
     plots).
  4. report: `report.md` with the headline table (test split), links to each policy's cascade
     report and plots; the table is printed at the end.
Pointing `--config.cascade.llm.simulated=false` and `--config.cascade.llm.base_url=...` at a
real endpoint replaces the simulated LLM with no code change.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from corea_jax.atomic_files import write_atomic
from corea_jax.cli.demo_claims import claim_lines, test_arrays
from corea_jax.errors import CoreaError
from corea_jax.models.scratch import ScratchModel
from corea_jax.scoring import metrics as metrics_lib


def _stage(name: str, done: bool) -> bool:
    print(f"\n=== demo: {name}{' (done, reused)' if done else ''}", file=sys.stderr, flush=True)
    return done


def _trained(run_dir: Path, steps: int) -> bool:
    metrics = run_dir / "metrics.jsonl"
    if not (run_dir / "export" / "config.json").exists() or not metrics.exists():
        return False
    lines = metrics.read_text().splitlines()
    return bool(lines) and json.loads(lines[-1])["step"] >= steps


BUNDLED_WARMUP = Path(__file__).resolve().parents[1] / "assets" / "demo_warmup"


def warmup_settings(config) -> dict:
    """Everything that decides the warm-up model; recorded beside it as `warmup.json`."""
    t = config.rl
    return json.loads(
        json.dumps(
            {
                # every field of the spec, defaults included, so a field added later with
                # its old behaviour as the default does not invalidate the bundled model
                "model": dataclasses.asdict(ScratchModel(**t.model.scratch.spec.to_dict())),
                "dtype": t.model.dtype,
                "synthetic": t.data.synthetic.to_dict(),
                "seed": t.train.seed,
                "sft_confidence": t.train.sft_confidence,
                "random_confidence": config.warmup_random_confidence,
                "steps": config.warmup_steps,
                "batch": config.warmup_batch,
                "learning_rate": config.warmup_learning_rate,
                "lr_warmup_steps": config.warmup_lr_warmup_steps,
                "schedule": config.warmup_schedule,
                "train_size": config.warmup_train_size,
            }
        )
    )


def _bundled_warm_start(config) -> Path | None:
    """The warm start to reuse instead of training one, or None (with the reason printed)."""
    if not config.warmup_model:
        return None
    if config.warmup_model != "bundled":
        path = Path(config.warmup_model)
        if not (path / "config.json").exists():
            raise CoreaError(f"warmup_model: {path}: no config.json (not a HF model directory)")
        return path
    record = BUNDLED_WARMUP / "warmup.json"
    if not record.exists():
        print(f"demo: no bundled warm start at {BUNDLED_WARMUP}; training one", file=sys.stderr)
        return None
    made_with = json.loads(record.read_text())
    wanted = warmup_settings(config)
    differs = sorted(k for k in set(made_with) | set(wanted) if made_with.get(k) != wanted.get(k))
    if differs:
        print(
            f"demo: the bundled warm start was made with other settings ({', '.join(differs)});"
            " training one from scratch",
            file=sys.stderr,
        )
        return None
    return BUNDLED_WARMUP


def warm_start(config, workdir: Path) -> Path:
    """Stage 1: the SFT warm start's model directory (bundled, given, reused or trained)."""
    from corea_jax.rl.train import run as train_run

    reuse = _bundled_warm_start(config)
    if reuse is not None:
        _stage(f"1/4 supervised warm-up: using {reuse}", True)
        return reuse
    warm = workdir / "warmup"
    sft = copy.deepcopy(config.rl)
    sft.train.mode = "sft"
    sft.train.steps = config.warmup_steps
    sft.train.prompts_per_step = config.warmup_batch
    sft.train.sft_random_confidence = config.warmup_random_confidence
    sft.train.eval_every = 0
    sft.train.checkpoint_every = max(1, config.warmup_steps // 4)
    sft.data.train_size = config.warmup_train_size
    sft.optim.learning_rate = config.warmup_learning_rate
    sft.optim.schedule = config.warmup_schedule
    sft.optim.warmup_steps = config.warmup_lr_warmup_steps
    if not _stage(
        "1/4 supervised warm-up (over-confident traces)", _trained(warm, sft.train.steps)
    ):
        train_run(sft, warm)
        write_atomic(
            warm / "export" / "warmup.json", json.dumps(warmup_settings(config), indent=2) + "\n"
        )
    return warm / "export"


def run(config, workdir: str | Path, warmup_only: bool = False) -> Path:
    from corea_jax.cascade import CascadeConfig, pipeline
    from corea_jax.rl.train import run as train_run

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.time()

    warm_dir = warm_start(config, workdir)
    if warmup_only:
        print(f"warm start: {warm_dir}", flush=True)
        return warm_dir

    policies = {}
    for i, preset in enumerate(config.policies):
        run_dir = workdir / "policies" / preset
        rl = copy.deepcopy(config.rl)
        rl.model.scratch.enabled = False
        rl.model.path = str(warm_dir)
        rl.reward.preset = preset
        done = _trained(run_dir, rl.train.steps)
        if not _stage(f"2/4 GRPO policy {i + 1}/{len(config.policies)}: {preset}", done):
            train_run(rl, run_dir)
        policies[preset] = run_dir / "export"

    summaries = {}
    for i, (preset, model_dir) in enumerate(policies.items()):
        out = workdir / "cascade" / preset
        cascade = copy.deepcopy(config.cascade)
        cascade.slm.path = str(model_dir)
        _stage(f"3/4 cascade evaluation {i + 1}/{len(policies)}: {preset}", False)
        summaries[preset] = (pipeline.run(CascadeConfig.from_config(cascade), out), out)

    _stage("4/4 report", False)
    rows = [headline_row(preset, *summaries[preset]) for preset in policies]
    table = headline_table(rows, config.cascade.llm.simulated)
    claims = claim_lines(
        {preset: test_arrays(out) for preset, (_, out) in summaries.items()},
        {preset: paper_choice(summary) for preset, (summary, _) in summaries.items()},
    )
    report = workdir / "report.md"
    seconds = time.time() - start
    write_atomic(report, report_text(rows, table, config, seconds, list(policies), claims))
    write_atomic(workdir / "headline.json", json.dumps(rows, indent=2) + "\n")
    print("\n" + table, flush=True)
    print(f"\nwrote {report}", file=sys.stderr)
    return report


def headline_row(preset: str, summary: dict, out: Path) -> dict:
    """The test-split figures of one policy: SLM calibration and the cascade at tau = LLM pass@1."""
    rows = [json.loads(x) for x in (out / "questions.jsonl").read_text().splitlines()]
    test = [r for r in rows if r["split"] == "test"]
    conf = [r["confidence"] if r["confidence"] is not None else 0.0 for r in test]
    slm = metrics_lib.calibration_summary(
        [r["slm_correct"] for r in test],
        conf,
        confidence_valid=[r["confidence"] is not None for r in test],
        format_ok=[r["slm_format_ok"] for r in test],
    )
    (group,) = [g for g in summary["groups"] if g != "all"][:1]
    signal = summary["groups"][group]["signals"]["verbalized"]
    llm_only = signal["test_baselines"]["llm_only"]
    paper = paper_choice(summary)
    cascade = paper["test"]
    distinct = len({round(c, 6) for c in conf})
    return {
        "policy": preset,
        "n_test": len(test),
        "slm_pass@1": slm["pass@1"],
        "slm_format_rate": slm["format_rate"],
        "slm_ece": slm["ece"],
        "slm_auroc": slm["auroc"],
        "slm_mean_confidence": slm["mean_confidence"],
        "distinct_confidences": distinct,
        "llm_pass@1": llm_only["pass_at_1"],
        "tau": paper["tau"],
        "cascade_pass@1": cascade["pass_at_1"],
        "cascade_llm%": cascade["llm_fraction"],
        "cascade_cost_vs_llm": (
            cascade["avg_cost"] / llm_only["avg_cost"] - 1 if llm_only["avg_cost"] else None
        ),
        "pass_drop_points": 100 * (llm_only["pass_at_1"] - cascade["pass_at_1"]),
        "cascade_intervals": paper.get("test_intervals", {}),
        "slm_intervals": summary["groups"][group].get("slm_intervals", {}),
    }


def paper_choice(summary: dict) -> dict:
    """The verbalized signal's tau by the paper's rule (tau = LLM pass@1) in a cascade summary."""
    group = [g for g in summary["groups"] if g != "all"][0]
    choices = summary["groups"][group]["signals"]["verbalized"]["choices"]
    return next(c for c in choices if c["rule"] == "llm_pass")


def _fmt(x, pct=False, signed=False):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    if pct:
        return f"{100 * x:+.1f}%" if signed else f"{100 * x:.1f}%"
    return f"{x:.3f}"


def headline_table(rows: list[dict], simulated: bool) -> str:
    llm = "simulated LLM" if simulated else "LLM"
    lines = [
        f"| policy | SLM pass@1 | format | ECE | AUROC | mean conf | tau | cascade pass@1 | "
        f"{llm} pass@1 | LLM% | cost vs {llm}-only |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['policy']} | {_fmt(r['slm_pass@1'], True)} | {_fmt(r['slm_format_rate'], True)}"
            f" | {_fmt(r['slm_ece'])} | {_fmt(r['slm_auroc'])} | {_fmt(r['slm_mean_confidence'])}"
            f" | {_fmt(r['tau'])} | {_fmt(r['cascade_pass@1'], True)} | "
            f"{_fmt(r['llm_pass@1'], True)} | {_fmt(r['cascade_llm%'], True)} | "
            f"{_fmt(r['cascade_cost_vs_llm'], True, True)} |"
        )
    return "\n".join(lines)


SIMULATED_BANNER = (
    "**The LLM is SIMULATED**: an in-process stand-in that knows the gold answers and is right "
    "at a set accuracy per difficulty level (configs/demo.py). No real large model is measured; "
    "the SLMs are real models trained here."
)


def report_text(rows, table, config, seconds, presets, claims) -> str:
    sim = config.cascade.llm.simulated
    links = "\n".join(
        f"- [{p}](cascade/{p}/report.md): sweep, baselines, tau rules, plots "
        f"(![reliability](cascade/{p}/report/synthetic/reliability.png))"
        for p in presets
    )
    banner = SIMULATED_BANNER if sim else ""
    return f"""# corea-jax demo: COREA on the synthetic task

{banner}

Test split of the synthetic task ({rows[0]["n_test"]} questions); tau chosen on the calibration
split by the paper's rule (tau = the LLM's pass@1), then applied to the test split. All policies
start from the same over-confident SFT warm start and get the same GRPO budget
({config.rl.train.steps} steps x {config.rl.train.prompts_per_step} prompts x
G={config.rl.rollout.group_size}); only the reward differs. Run time: {seconds / 60:.1f} min.

{table}

## The paper's claims, checked on this run with 95% intervals
Bootstrap over the test questions, paired across policies (`corea_jax/cli/demo_claims.py`):
"met" only when the whole interval lies inside the target, "not resolved" when it straddles
a boundary. One GRPO seed per policy: seed-to-seed variation is not in these intervals.

{chr(10).join(claims)}

Confidence values: {", ".join(f"{r['policy']} {r['distinct_confidences']}" for r in rows)}
distinct values on the test split (COREA's stated limitation: confidences collapse onto a few
values, making the accuracy/cost curve over tau step-like).

## Per-policy cascade reports
{links}
"""

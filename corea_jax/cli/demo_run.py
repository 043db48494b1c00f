"""`corea-jax demo`: the whole method end to end on the synthetic task, offline, on a CPU.

Stages (each is skipped when its output exists, so re-running with the same workdir resumes):
  1. warm-up: a tiny Qwen2-architecture model built from scratch (its own BPE tokenizer and
     ChatML template) is trained with SFT on reference traces of the synthetic task. Half the
     traces state a high confidence (`train.sft_confidence`, 0.9), the others a two-decimal
     value drawn by the question's hash (`synthetic.warmup_confidence`): the warm model is
     over-confident, as instruction-tuned SLMs are, and its stated values are varied but say
     nothing about correctness. Bundled (corea_jax/assets/demo_warmup) while its settings hold.
  2. policies: every reward preset of `policies` x every seed of `seeds`, trained with the real
     GRPO trainer from that same warm start with the same budget; within a seed only the reward
     differs (same data order and rollout draws). `learning_rates` and `std_scalings` hold each
     reward's learning rate and advantage std scaling as chosen on the validation split by
     `:tune` (`demo_tune`).
  3. cascades: `corea_jax.cascade.compare` runs every SLM (the warm start too) once with the
     signals its systems need (verbalized, AvgProb, probe, router) against a SIMULATED LLM
     (in-process, behind the same `LLMClient` as a real endpoint; it knows the gold answers and
     is right with a known probability that falls with the question's digit work), which
     answers every question once for all of them.
  4. greedy decoding of every SLM on the test questions (the second column).
  5. report: `report.md`: the headline over seeds with question x seed bootstrap intervals
     (`demo_experiment`), the claims (`demo_claims`), the seed table, per-level calibration,
     what the fitted baselines cost, expected vs sampled accuracy, plots (`demo_plots`);
     `experiment.json` holds every figure. The headline is printed at the end.
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
from corea_jax.cli import demo_plots
from corea_jax.cli.demo_claims import claim_lines
from corea_jax.cli.demo_experiment import (
    WARM,
    compare_systems,
    headline_rows,
    level_rows,
    slm_name,
    system_specs,
)
from corea_jax.errors import CoreaError
from corea_jax.models.scratch import ScratchModel
from corea_jax.scoring import metrics as metrics_lib
from corea_jax.scoring.stats import Interval


def _stage(name: str, done: bool) -> bool:
    print(f"\n=== demo: {name}{' (done, reused)' if done else ''}", file=sys.stderr, flush=True)
    return done


# What makes a GRPO run of the demo what it is: a run directory started with other values is
# not resumed or reused (its policy would be reported under the new settings).
RUN_KEYS = (("reward", "preset"), ("optim", "learning_rate"), ("advantage", "std_scaling"),
            ("train", "seed"))  # fmt: skip


def _check_run_settings(run_dir: Path, rl) -> None:
    """Raises a one-line CoreaError when `run_dir` was started with other `RUN_KEYS` values."""
    saved_path = run_dir / "config.json"
    if not saved_path.exists():
        return
    try:
        saved = json.loads(saved_path.read_text())
    except ValueError as exc:
        raise CoreaError(f"{saved_path}: not readable as JSON ({exc})") from None
    for section, key in RUN_KEYS:
        was, now = saved.get(section, {}).get(key), rl[section][key]
        if was != now:
            raise CoreaError(
                f"{run_dir}: trained with {section}.{key}={was!r}, this config asks for {now!r};"
                " use a fresh --workdir (or remove that directory) to train it again"
            )


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
                # the rule behind that share (synthetic.warmup_confidence): a new rule with the
                # same share must not reuse a bundle made with the old one
                "confidence_rule": "uniform-2dp",
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

    reuse = _bundled_warm_start(config)
    if reuse is not None:
        _stage(f"1/5 supervised warm-up: using {reuse}", True)
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
        "1/5 supervised warm-up (over-confident traces)", _trained(warm, sft.train.steps)
    ):
        _train(sft, warm)
        write_atomic(
            warm / "export" / "warmup.json", json.dumps(warmup_settings(config), indent=2) + "\n"
        )
    return warm / "export"


def _train(rl, run_dir: Path) -> None:
    """One training run; stops the demo when it ended early (a SIGTERM saves a checkpoint and
    returns without exporting): the next stage would otherwise fail on a missing model."""
    from corea_jax.rl.train import run as train_run

    train_run(rl, run_dir)
    if not _trained(run_dir, rl.train.steps):
        raise CoreaError(
            f"{run_dir}: training stopped before step {rl.train.steps} (interrupted?); run the "
            "same command again to resume from its checkpoint"
        )


def train_policies(config, warm_dir: Path, workdir: Path) -> dict[str, Path]:
    """Stage 2: every reward preset x seed from the same warm start, same budget; a seed sets
    the data order and every rollout draw, so seed s is the same for every reward.
    Returns `{slm name: export directory}`."""

    runs = [(seed, preset) for seed in config.seeds for preset in config.policies]
    out = {}
    for i, (seed, preset) in enumerate(runs, 1):
        name = slm_name(preset, seed)
        run_dir = workdir / "policies" / name
        rl = copy.deepcopy(config.rl)
        rl.model.scratch.enabled = False
        rl.model.path = str(warm_dir)
        rl.reward.preset = preset
        rl.train.seed = seed
        rl.optim.learning_rate = config.learning_rates.get(preset, rl.optim.learning_rate)
        rl.advantage.std_scaling = config.std_scalings.get(preset, rl.advantage.std_scaling)
        _check_run_settings(run_dir, rl)
        done = _trained(run_dir, rl.train.steps)
        if not _stage(f"2/5 GRPO policy {i}/{len(runs)}: {preset}, seed {seed}", done):
            _train(rl, run_dir)
        out[name] = run_dir / "export"
    return out


def greedy_metrics(config, slms: dict[str, Path], workdir: Path) -> dict[str, dict]:
    """Stage 4 (`config.greedy`): each SLM's greedy answers to the test questions, the second
    column beside the sampled (matched) decoding: `{slm: {"pass@1", "ece", "auroc"}}`."""
    from corea_jax.cascade import CascadeConfig, pipeline
    from corea_jax.cascade.slm_answers import load_questions

    base = CascadeConfig.from_config(config.cascade)
    questions = load_questions(base.datasets)
    masks = pipeline.calibration_masks(base, questions)
    test = {
        name: (tuple(r for r, m in zip(records, masks[name], strict=True) if not m), templates)
        for name, (records, templates) in questions.items()
    }
    out = {}
    for i, (name, path) in enumerate(slms.items(), 1):
        _stage(f"4/5 greedy decoding {i}/{len(slms)}: {name}", False)
        slm = dataclasses.replace(base.slm, path=str(path), temperature=0.0, samples=1)
        cfg = dataclasses.replace(base, slm=slm)
        with cfg.grading.grader() as grader:
            answers, _ = pipeline.slm_pass(cfg, workdir / "greedy" / name, test, grader)
        rows = [r for rows in answers.values() for r in rows]
        m = metrics_lib.calibration_summary(
            [r["correct"] for r in rows],
            [r["confidence"] or 0.0 for r in rows],
            confidence_valid=[r["confidence"] is not None for r in rows],
        )
        out[name] = {k: m[k] for k in ("pass@1", "ece", "auroc")}
    return out


def run(config, workdir: str | Path, warmup_only: bool = False) -> Path:
    from corea_jax.cascade import CascadeConfig
    from corea_jax.cascade.compare import CompareConfig
    from corea_jax.cascade.compare import run as compare_run

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.time()

    if config.mode == "tune" and not warmup_only:
        from corea_jax.cli import demo_tune

        demo_tune.run(config, workdir)
        return workdir / "tune.md"
    warm_dir = warm_start(config, workdir)
    if warmup_only:
        print(f"warm start: {warm_dir}", flush=True)
        return warm_dir

    policies = train_policies(config, warm_dir, workdir)
    slms = {WARM: warm_dir, **policies}
    specs = system_specs(config.policies, config.seeds)
    compare = CompareConfig(
        slms=tuple((name, str(path)) for name, path in slms.items()),
        systems=compare_systems(specs),
        cascade=CascadeConfig.from_config(config.cascade),
        rule=RULE,
    )
    _stage("3/5 cascades: every SLM with every signal it needs, one LLM pass", False)
    compare_run(compare, workdir / "compare")
    greedy = greedy_metrics(config, slms, workdir) if config.greedy else {}

    _stage("5/5 report", False)
    compare_dir = workdir / "compare"
    group = next(iter(compare.cascade.datasets)).name
    rows = headline_rows(compare_dir, specs, group, RULE, n_boot=config.bootstrap)
    levels = level_rows(compare_dir, specs, group, RULE)
    claims = claim_lines(compare_dir, specs, group, RULE, rows, n_boot=config.bootstrap)
    plots = demo_plots.write_plots(workdir / "report", compare_dir, specs, group, RULE)
    seconds = time.time() - start
    fits = {}
    for name in slms:
        summary = json.loads((compare_dir / "slms" / name / "summary.json").read_text())
        if summary.get("fitted_signals"):
            fits[name] = summary["fitted_signals"]
    experiment = {"rows": rows, "levels": levels, "greedy": greedy, "claims": claims,
                  "fits": fits, "seconds": seconds, "peak_memory_gb": peak_memory_gb()}  # fmt: skip
    write_atomic(workdir / "experiment.json", json.dumps(experiment, indent=2) + "\n")
    text = report_text(config, experiment, plots)
    report = workdir / "report.md"
    write_atomic(report, text)
    print("\n" + headline_table(rows, config.cascade.llm.simulated), flush=True)
    print("\n" + "\n".join(claims), flush=True)
    print(f"\nwrote {report}", file=sys.stderr)
    return report


RULE = "llm_pass"  # the paper's tau rule: tau = the LLM's pass@1 on the calibration split


def peak_memory_gb() -> float:
    """Peak resident memory of this process and its finished children (grading workers), GB."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round((own + children) / 1024**2, 2)  # ru_maxrss is in KiB on Linux


def _iv(stat: dict, scale=100.0, digits=1, signed=False) -> str:
    iv = Interval(**stat["interval"])
    sd = stat["sd"]
    sd_text = "" if sd is None or not np.isfinite(sd) else f" +- {abs(sd) * scale:.{digits}f}"
    return f"{iv.format(scale=scale, digits=digits, signed=signed)}{sd_text}"


def headline_table(rows: list[dict], simulated: bool) -> str:
    """The headline: one row per system, mean over seeds [95% interval] +- SD over seeds."""
    llm = "sim. LLM" if simulated else "LLM"
    lines = [
        f"| system | seeds | SLM pass@1 % | ECE | ECE (equal-mass) | AUROC | AURC | "
        f"cascade pass@1 % | LLM % | cost vs {llm}-only % | distinct conf. |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["fitted"]:
            lines.append(f"| {r['system']} | {len(r['seeds'])} | not fitted |" + " |" * 8)
            continue
        st = r["stats"]
        lines.append(
            f"| {r['system']} | {len(r['seeds'])} | {_iv(st['slm_pass'])} | "
            f"{_iv(st['ece'], 1, 3)} | {_iv(st['ece_mass'], 1, 3)} | {_iv(st['auroc'], 1, 3)} | "
            f"{_iv(st['aurc'], 1, 3)} | "
            f"{_iv(st['cascade_pass'])} | {_iv(st['llm_fraction'])} | "
            f"{_iv(st['cost_vs_llm'], signed=True)} | "
            f"{'/'.join(str(d) for d in r['distinct_values'])} |"
        )
    return "\n".join(lines)


def seed_table(rows: list[dict]) -> str:
    """Each verbalized system's figures seed by seed."""
    lines = ["| system | seed | tau | SLM pass@1 % | ECE | AUROC | cascade pass@1 % | LLM % "
             "| cost vs LLM-only % |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if not r["fitted"] or r["signal"] != "verbalized":
            continue
        st = r["stats"]
        for i, seed in enumerate(r["seeds"]):
            v = {k: st[k]["per_seed"][i] for k in st}
            lines.append(
                f"| {r['system']} | {seed} | {r['taus'][i]:.3f} | {100 * v['slm_pass']:.1f} | "
                f"{v['ece']:.3f} | {v['auroc']:.3f} | {100 * v['cascade_pass']:.1f} | "
                f"{100 * v['llm_fraction']:.1f} | {100 * v['cost_vs_llm']:+.1f} |"
            )
    return "\n".join(lines)


def level_table(levels: list[dict]) -> str:
    """ECE and AUROC within each difficulty level (mean over seeds), and within-level AUROC."""
    if not levels:
        return "(no difficulty levels in this dataset)"
    names = list(levels[0]["levels"])
    head = "| system | AUROC | within-level AUROC | " + " | ".join(
        f"ECE {n}" for n in names
    ) + " |"  # fmt: skip
    lines = [head, "|" + "---|" * (3 + len(names))]
    for s in levels:
        cells = [_f3(s["levels"][n]["ece"]) for n in names]
        lines.append(f"| {s['system']} | {_f3(s['auroc'])} | {_f3(s['within_level_auroc'])} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(lines)


def _f3(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


SIMULATED_BANNER = (
    "**The LLM is SIMULATED**: an in-process stand-in that knows the gold answers and is right "
    "with a known probability that falls with the question's digit work (configs/demo.py). No "
    "real large model is measured; the SLMs are real models trained here."
)


def report_text(config, experiment: dict, plots: dict) -> str:
    rows, sim = experiment["rows"], config.cascade.llm.simulated
    first = next(r for r in rows if r["fitted"])
    rl, e = config.rl, config.cascade
    lrs = ", ".join(
        f"{p} {config.learning_rates.get(p, rl.optim.learning_rate):g} / "
        f"{config.std_scalings.get(p, rl.advantage.std_scaling)}"
        for p in config.policies
    )
    llm_line = (
        f"{'Simulated LLM' if sim else 'LLM'} pass@1 on the test split: "
        f"{Interval(**first['llm_pass_interval']).format(scale=100, digits=1)}%"
        + (f" (its expected pass@1, from its known per-question accuracy: "
           f"{100 * first['llm_expected_pass']:.1f}%)" if first["llm_expected_pass"] else "")
    )  # fmt: skip
    seeds = ", ".join(str(s) for s in config.seeds)
    setup = [
        "- SLMs: one over-confident SFT warm start (SLM-Verb is the warm start itself), then "
        f"{', '.join(config.policies)} policies trained from it with GRPO ({rl.train.steps} "
        f"steps x {rl.train.prompts_per_step} prompts x G={rl.rollout.group_size}; learning "
        f"rate / advantage std scaling per reward, configs/demo.py says where each comes from: "
        f"{lrs}), seeds "
        f"{seeds}: within a seed only the reward differs (same data order, same rollout draws).",
        "- Decoding matched to training: each SLM answers at the rollout temperature "
        f"({e.slm.temperature:g}), {e.slm.samples} sample(s) per question; greedy decoding is "
        "the second table.",
        f"- Questions: the synthetic task's test problems ({first['n_test']} test questions, "
        "duplicates removed); tau is chosen on a separate calibration part (problems hashed "
        "apart) by the paper's rule (tau = the LLM's pass@1 there). No setting was chosen by "
        "looking at these questions (configs/demo.py says where each comes from).",
        f"- {llm_line}.",
        f"- Run time {experiment['seconds'] / 60:.1f} min, peak memory "
        f"{experiment['peak_memory_gb']:.2f} GB (this process and its workers).",
    ]
    greedy = experiment["greedy"]
    greedy_lines = "\n".join(
        f"| {name} | {100 * g['pass@1']:.1f} | {_f3(g['ece'])} | {_f3(g['auroc'])} |"
        for name, g in greedy.items()
    )
    greedy_block = (
        "| SLM | pass@1 % | ECE | AUROC |\n|---|---|---|---|\n" + greedy_lines
        if greedy else "(not run: config.greedy=False)"
    )  # fmt: skip
    expected = "\n".join(
        f"- {r['system']}: sampled {100 * r['stats']['cascade_pass']['mean']:.1f}%, expected "
        f"{100 * r['cascade_expected_pass']:.1f}%"
        for r in rows if r["fitted"] and r.get("cascade_expected_pass") is not None
    )  # fmt: skip
    images = " ".join(f"![{k}]({v})" for k, v in plots.items())
    fit_lines = "\n".join(
        f"- {name} {signal}: " + (
            f"features {f['feature_seconds']:.1f} s, fit {f['fit_seconds']:.1f} s (L2 C = "
            f"{f['c']:g} by cross-validation, {f['n_train']} calibration answers)"
            if f["fitted"] else f"not fitted: {f['note']}")
        for name, by_signal in experiment.get("fits", {}).items()
        for signal, f in by_signal.items()
    )  # fmt: skip
    return f"""# corea-jax demo: COREA and the paper's baselines on the synthetic task

{SIMULATED_BANNER if sim else ""}

## Setup
{chr(10).join(setup)}

## Headline (test split)
Mean over seeds, [95% interval] of a bootstrap over questions and seeds, +- SD over seeds.
ECE: 10 equal-width bins; equal-mass ECE: 15 bins of equal count, ties kept together; AURC:
area under the risk-coverage curve (lower is better).
"distinct conf." counts the distinct values of the row's signal, seed by seed.

{headline_table(rows, sim)}

## The paper's claims, with intervals
"met" only when the whole interval lies inside the target; "not resolved" when it straddles a
boundary (more questions or seeds would be needed to decide).

{chr(10).join(experiment["claims"])}

## Seed table
{seed_table(rows)}

## Greedy decoding (second column)
{greedy_block}

## Calibration within difficulty levels
Does the stated confidence track the question, or only its level? Within-level AUROC counts only
pairs of questions from the same level (0.5: the confidence knows the level and nothing more).

{level_table(experiment["levels"])}

## What the fitted baselines cost on this CPU
Probe and router: one forward pass per answer (probe) or prompt (router) for the hidden states,
then the logistic regression (`corea_jax/probes`); a router also saves the SLM's generation on
every question it sends away.

{fit_lines or "(no probe or router in this run)"}

## Expected vs sampled cascade accuracy
{expected or "(the LLM is real: no known per-question accuracy)"}

{images}

Per-SLM cascade reports (sweeps, every tau rule, reliability diagrams, every signal):
`compare/slms/NAME/report.md`; every system seed by seed: `compare/compare.md`.
"""

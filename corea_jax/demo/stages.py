"""The demo's training and decoding stages: the warm start, the GRPO policies, greedy decoding.

Each stage is skipped when its output exists, so re-running with the same workdir resumes:
  1. `warm_start`: a tiny Qwen2-architecture model built from scratch (its own BPE tokenizer
     and ChatML template) trained with SFT on reference traces of the synthetic task. Half the
     traces state a high confidence (`rl.train.sft_confidence`, 0.9), the others a two-decimal
     value drawn by the question's hash (`synthetic.warmup_confidence`): the warm model is
     over-confident, as instruction-tuned SLMs are, and its stated values are varied but say
     nothing about correctness. Bundled (corea_jax/assets/demo_warmup) while its settings hold.
  2. `train_policies`: every reward preset x seed, trained with the real GRPO trainer from that
     same warm start with the same budget; within a seed only the reward differs (same data
     order and rollout draws).
  4. `greedy_metrics`: greedy decoding of every SLM on the test questions (the second column).
Stage 3 (the cascades) is `corea_jax.cascade.compare`; stage 5 is `corea_jax.demo.report`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from corea_jax.atomic_files import write_atomic
from corea_jax.demo.settings import POLICIES, DemoConfig, TrainSpec
from corea_jax.demo.tables import slm_name
from corea_jax.errors import CoreaError

BUNDLED_WARMUP = Path(__file__).resolve().parents[1] / "assets" / "demo_warmup"


def stage(name: str, done: bool) -> bool:
    """Prints the stage's banner (saying when its output is reused); returns `done`."""
    print(f"\n=== demo: {name}{' (done, reused)' if done else ''}", file=sys.stderr, flush=True)
    return done


# What makes a GRPO run of the demo what it is: a run directory started with other values is
# not resumed or reused (its policy would be reported under the new settings).
RUN_KEYS = (("reward", "preset"), ("optim", "learning_rate"), ("advantage", "std_scaling"),
            ("train", "seed"), ("reward", "calibration_weight"), ("reward", "target_mix"),
            ("advantage", "spans"), ("advantage", "confidence_baseline"))  # fmt: skip


def check_run_settings(run_dir: Path, spec: TrainSpec) -> None:
    """Raises a one-line CoreaError when `run_dir` was started with other `RUN_KEYS` values.
    A key the saved run does not record was at its default then (`RUN_DEFAULTS`)."""
    saved_path = run_dir / "config.json"
    if not saved_path.exists():
        return
    try:
        saved = json.loads(saved_path.read_text())
    except ValueError as exc:
        raise CoreaError(f"{saved_path}: not readable as JSON ({exc})") from None
    now_settings = spec.settings()
    for section, key in RUN_KEYS:
        now = now_settings[section][key]
        was = saved.get(section, {}).get(key, RUN_DEFAULTS.get((section, key)))
        if was != now:
            raise CoreaError(
                f"{run_dir}: trained with {section}.{key}={was!r}, this config asks for {now!r};"
                " use a fresh --workdir (or remove that directory) to train it again"
            )


# The value a run directory written before a key existed was trained with.
RUN_DEFAULTS = {
    ("reward", "calibration_weight"): 1.0,
    ("reward", "target_mix"): 1.0,
    ("advantage", "spans"): "none",
    ("advantage", "confidence_baseline"): "group",
}


def trained(run_dir: Path, steps: int) -> bool:
    """The run in `run_dir` reached `steps` and exported its policy."""
    metrics = run_dir / "metrics.jsonl"
    if not (run_dir / "export" / "config.json").exists() or not metrics.exists():
        return False
    lines = metrics.read_text().splitlines()
    return bool(lines) and json.loads(lines[-1])["step"] >= steps


def train(spec: TrainSpec, run_dir: Path) -> None:
    """One training run; stops the demo when it ended early (a SIGTERM saves a checkpoint and
    returns without exporting): the next stage would otherwise fail on a missing model."""
    from corea_jax.rl.train import run as train_run

    train_run(spec.config_dict(), run_dir)
    if not trained(run_dir, spec.run.train.steps):
        raise CoreaError(
            f"{run_dir}: training stopped before step {spec.run.train.steps} (interrupted?); run "
            "the same command again to resume from its checkpoint"
        )


def train_once(spec: TrainSpec, run_dir: Path, banner: str) -> Path:
    """Trains `spec` into `run_dir` unless it is there already (refusing one started with other
    settings); returns its export directory."""
    check_run_settings(run_dir, spec)
    if not stage(banner, trained(run_dir, spec.run.train.steps)):
        train(spec, run_dir)
    return run_dir / "export"


# ---------------------------------------------------------------------------------------------
# Stage 1: the warm start


def warmup_settings(config: DemoConfig) -> dict:
    """Everything that decides the warm-up model; recorded beside it as `warmup.json`."""
    from corea_jax.models.scratch import ScratchModel

    rl, w = config.rl, config.warmup
    return json.loads(
        json.dumps(
            {
                # every field of the spec, defaults included, so a field added later with
                # its old behaviour as the default does not invalidate the bundled model
                "model": dataclasses.asdict(ScratchModel(**rl.model["scratch"]["spec"])),
                "dtype": rl.model["dtype"],
                "synthetic": rl.data["synthetic"],
                "seed": rl.run.train.seed,
                "sft_confidence": rl.run.train.sft_confidence,
                "random_confidence": w.random_confidence,
                # the rule behind that share (synthetic.warmup_confidence): a new rule with the
                # same share must not reuse a bundle made with the old one
                "confidence_rule": "uniform-2dp",
                "steps": w.steps,
                "batch": w.batch,
                "learning_rate": w.learning_rate,
                "lr_warmup_steps": w.lr_warmup_steps,
                "schedule": w.schedule,
                "train_size": w.train_size,
            }
        )
    )


def bundled_warm_start(config: DemoConfig) -> Path | None:
    """The warm start to reuse instead of training one, or None (with the reason printed)."""
    model = config.warmup.model
    if not model:
        return None
    if model != "bundled":
        path = Path(model)
        if not (path / "config.json").exists():
            raise CoreaError(f"warmup.model: {path}: no config.json (not a HF model directory)")
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


def warmup_spec(config: DemoConfig) -> TrainSpec:
    """The SFT run of stage 1, derived from the GRPO base run."""
    w = config.warmup
    return config.rl.replace(
        train={"mode": "sft", "steps": w.steps, "prompts_per_step": w.batch,
               "sft_random_confidence": w.random_confidence, "eval_every": 0,
               "checkpoint_every": max(1, w.steps // 4)},
        optim={"learning_rate": w.learning_rate, "schedule": w.schedule,
               "warmup_steps": w.lr_warmup_steps},
        data={"train_size": w.train_size},
    )  # fmt: skip


def warm_start(config: DemoConfig, workdir: Path) -> Path:
    """Stage 1: the SFT warm start's model directory (bundled, given, reused or trained)."""
    reuse = bundled_warm_start(config)
    if reuse is not None:
        stage(f"1/5 supervised warm-up: using {reuse}", True)
        return reuse
    warm, spec = workdir / "warmup", warmup_spec(config)
    done = trained(warm, spec.run.train.steps)
    if not stage("1/5 supervised warm-up (over-confident traces)", done):
        train(spec, warm)
        write_atomic(
            warm / "export" / "warmup.json", json.dumps(warmup_settings(config), indent=2) + "\n"
        )
    return warm / "export"


# ---------------------------------------------------------------------------------------------
# Stage 2: the GRPO policies


def policy_spec(config: DemoConfig, warm_dir: Path, policy: str, seed: int, *,
                learning_rate: float | None = None, std_scaling: str | None = None,
                calibration_weight: float | None = None) -> TrainSpec:  # fmt: skip
    """The GRPO run of one policy (`settings.POLICIES`) and seed from the warm start: its
    validation-chosen learning rate, std scaling and calibration weight unless given."""
    preset, overrides = POLICIES[policy]
    spec = config.rl.from_model(str(warm_dir)).replace(
        reward={"preset": preset, "calibration_weight": _given(
            calibration_weight, config.calibration_weight(policy))},
        train={"seed": seed},
        optim={"learning_rate": _given(learning_rate, config.learning_rate(policy))},
        advantage={"std_scaling": _given(std_scaling, config.std_scaling(policy))},
    )  # fmt: skip
    return spec.replace(**overrides) if overrides else spec


def _given(value, default):
    return default if value is None else value


def train_policies(config: DemoConfig, warm_dir: Path, workdir: Path) -> dict[str, Path]:
    """Stage 2: every reward preset x seed from the same warm start, same budget; a seed sets
    the data order and every rollout draw, so seed s is the same for every reward.
    Returns `{slm name: export directory}`."""
    runs = [(seed, policy) for seed in config.seeds for policy in config.policies]
    out = {}
    for i, (seed, policy) in enumerate(runs, 1):
        name = slm_name(policy, seed)
        spec = policy_spec(config, warm_dir, policy, seed)
        banner = f"2/5 GRPO policy {i}/{len(runs)}: {policy}, seed {seed}"
        out[name] = train_once(spec, workdir / "policies" / name, banner)
    return out


# ---------------------------------------------------------------------------------------------
# Stage 4: greedy decoding


def greedy_metrics(config: DemoConfig, slms: dict[str, Path], workdir: Path) -> dict[str, dict]:
    """Stage 4 (`config.greedy`): each SLM's greedy answers to the test questions, the second
    column beside the sampled (matched) decoding:
    `{slm: {"pass@1", "ece", "auroc", "distinct"}}` (distinct: stated values)."""
    import numpy as np

    from corea_jax.cascade import pipeline
    from corea_jax.cascade.slm_answers import load_questions
    from corea_jax.scoring import metrics as metrics_lib

    base = config.cascade
    questions = load_questions(base.datasets)
    masks = pipeline.calibration_masks(base, questions)
    test = {
        name: (tuple(r for r, m in zip(records, masks[name], strict=True) if not m), templates)
        for name, (records, templates) in questions.items()
    }
    out = {}
    for i, (name, path) in enumerate(slms.items(), 1):
        stage(f"4/5 greedy decoding {i}/{len(slms)}: {name}", False)
        slm = dataclasses.replace(base.slm, path=str(path), temperature=0.0, samples=1)
        cfg = dataclasses.replace(base, slm=slm)
        with cfg.grading.grader() as grader:
            answers, _ = pipeline.slm_pass(cfg, workdir / "greedy" / name, test, grader)
        rows = [r for rows in answers.values() for r in rows]
        stated = [r["confidence"] for r in rows if r["confidence"] is not None]
        m = metrics_lib.calibration_summary(
            [r["correct"] for r in rows],
            [r["confidence"] or 0.0 for r in rows],
            confidence_valid=[r["confidence"] is not None for r in rows],
        )
        out[name] = {k: m[k] for k in ("pass@1", "ece", "auroc")}
        out[name]["distinct"] = int(np.unique(np.asarray(stated, float)).size)
    return out

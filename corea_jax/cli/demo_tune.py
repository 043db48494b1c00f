"""`corea-jax demo --config=configs/demo.py:tune`: the demo's learning rate per reward, chosen on
the validation split by one procedure for every reward.

For each reward preset and each learning rate of `tune.learning_rates`, a GRPO policy is trained
from the same warm start with the demo's budget and seed `tune.seed`; each is then scored on
`tune.questions` questions of the synthetic task's *validation* split (its "calibration"
split: problems hashed apart from train and test) by the criterion fixed before any run: the
policy's own training objective, its mean reward under its own preset on G samples per
question at the rollout temperature (RLVR: correctness and format; Brier and COREA: plus their
calibration terms). The best learning rate per preset is written to `tune.json` and `tune.md`
with every candidate's validation reward, pass@1 and ECE; the default demo config holds those
choices (`learning_rates`). No test question is read.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np

from corea_jax.atomic_files import write_atomic


def validation_objective(model_dir: Path, preset: str, config, records, templates) -> dict:
    """A policy's mean reward under `preset` (and pass@1, ECE) on `records`, G samples each."""
    import jax.numpy as jnp

    from corea_jax.data import encode_prompt
    from corea_jax.models import load_model, load_tokenizer
    from corea_jax.rl.rewards import PRESETS
    from corea_jax.rl.rollout_rewards import group_rewards, score_groups
    from corea_jax.sampling import Sampler, make_method
    from corea_jax.scoring import metrics
    from corea_jax.scoring.grading_workers import Grader
    from corea_jax.scoring.score import ScoreItem

    rl = config.rl
    g = rl.rollout.group_size
    tokenizer = load_tokenizer(model_dir)
    sampler = Sampler.for_tokenizer(load_model(model_dir, dtype=jnp.float32), tokenizer)
    prompts = [encode_prompt(r, tokenizer, templates) for r in records]
    method = make_method(rl.rollout.temperature)
    out = sampler.generate(
        prompts, max_new_tokens=rl.rollout.max_new_tokens, n=g, method=method,
        seed=config.tune.seed,
    )  # fmt: skip
    texts = [tokenizer.decode(out.row_tokens(r), skip_special_tokens=True)
             for r in range(len(records) * g)]  # fmt: skip
    with Grader(workers=0) as grader:
        scored = score_groups(texts, [ScoreItem.from_record(r) for r in records], g, grader)
    parts = group_rewards(scored, texts, PRESETS[preset])
    conf = scored.confidence_or(0.0).reshape(-1)
    correct = np.asarray(scored.correct).reshape(-1)
    return {
        "reward": float(np.mean(parts["reward"])),
        "pass@1": float(correct.mean()),
        "ece": float(metrics.expected_calibration_error(conf, correct)),
    }


def run(config, workdir: Path) -> dict:
    """Trains every (preset, learning rate) candidate, scores it on validation, writes the
    choice. Resumes: trained candidates are reused."""
    from corea_jax.cli.demo_run import _stage, _train, _trained, warm_start
    from corea_jax.data import synthetic

    workdir = Path(workdir)
    warm_dir = warm_start(config, workdir)
    task = synthetic.SyntheticTask()
    records = synthetic.make_split(task, "calibration", config.tune.questions)
    results = {}
    candidates = [(p, lr) for p in config.policies for lr in config.tune.learning_rates]
    for i, (preset, lr) in enumerate(candidates, 1):
        run_dir = workdir / "tune" / f"{preset}-lr{lr:g}"
        rl = copy.deepcopy(config.rl)
        rl.model.scratch.enabled = False
        rl.model.path = str(warm_dir)
        rl.reward.preset = preset
        rl.optim.learning_rate = lr
        rl.train.seed = config.tune.seed
        done = _trained(run_dir, rl.train.steps)
        if not _stage(f"tune {i}/{len(candidates)}: {preset}, learning rate {lr:g}", done):
            _train(rl, run_dir)
        score = validation_objective(run_dir / "export", preset, config, records,
                                     synthetic.SYNTHETIC_PROMPTS)  # fmt: skip
        results.setdefault(preset, {})[f"{lr:g}"] = score
        print(f"  {preset} lr {lr:g}: validation reward {score['reward']:.4f}, pass@1 "
              f"{score['pass@1']:.3f}, ECE {score['ece']:.3f}", file=sys.stderr)  # fmt: skip
    chosen = {p: float(max(r, key=lambda lr: r[lr]["reward"])) for p, r in results.items()}
    out = {"criterion": "mean validation reward under the policy's own preset",
           "questions": len(records), "seed": config.tune.seed, "steps": config.rl.train.steps,
           "results": results, "chosen": chosen}  # fmt: skip
    write_atomic(workdir / "tune.json", json.dumps(out, indent=2) + "\n")
    write_atomic(workdir / "tune.md", tune_markdown(out))
    print(tune_markdown(out), flush=True)
    return out


def tune_markdown(out: dict) -> str:
    lines = [
        f"# Demo tuning on the validation split ({out['questions']} questions, seed "
        f"{out['seed']}, {out['steps']} GRPO steps)",
        "",
        f"Criterion: {out['criterion']}.",
        "",
        "| reward | learning rate | validation reward | pass@1 | ECE | chosen |",
        "|---|---|---|---|---|---|",
    ]
    for preset, by_lr in out["results"].items():
        for lr, s in by_lr.items():
            mark = "yes" if float(lr) == out["chosen"][preset] else ""
            lines.append(f"| {preset} | {lr} | {s['reward']:.4f} | {s['pass@1']:.3f} | "
                         f"{s['ece']:.3f} | {mark} |")  # fmt: skip
    lines += ["", "configs/demo.py: `c.learning_rates = "
              + json.dumps(out["chosen"]) + "`"]  # fmt: skip
    return "\n".join(lines) + "\n"

"""`corea-jax demo --config=configs/demo.py:tune`: the demo's learning rate and advantage std
scaling per reward, chosen on the validation split by one procedure for every reward.

For each reward preset, each learning rate of `tune.learning_rates` and each advantage std
scaling of `tune.std_scalings` (PAPER.md leaves it open), a GRPO policy is trained
from the same warm start with the demo's budget and seed `tune.seed`; each is then scored on
`tune.questions` questions of the synthetic task's *validation* split (its "calibration"
split: problems hashed apart from train and test) by the criterion fixed before any run: the
policy's own training objective, its mean reward under its own preset on G samples per
question at the rollout temperature (RLVR: correctness and format; Brier and COREA: plus their
calibration terms). The best learning rate per preset is written to `tune.json` and `tune.md`
with every candidate's validation reward, pass@1 and ECE; the default demo config holds those
choices (`learning_rates`, `std_scalings`). No test question is read.
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
    from corea_jax.cli.demo_run import _check_run_settings, _stage, _train, _trained, warm_start
    from corea_jax.data import synthetic

    workdir = Path(workdir)
    warm_dir = warm_start(config, workdir)
    task = synthetic.SyntheticTask()
    records = synthetic.make_split(task, "calibration", config.tune.questions)
    results = {}
    candidates = [(p, lr, std) for p in config.policies for lr in config.tune.learning_rates
                  for std in config.tune.std_scalings]  # fmt: skip
    for i, (preset, lr, std) in enumerate(candidates, 1):
        # "group" keeps the name of the runs made before std scaling was tuned (reused).
        name = f"{preset}-lr{lr:g}" + ("" if std == "group" else f"-std_{std}")
        run_dir = workdir / "tune" / name
        rl = copy.deepcopy(config.rl)
        rl.model.scratch.enabled = False
        rl.model.path = str(warm_dir)
        rl.reward.preset = preset
        rl.optim.learning_rate = lr
        rl.advantage.std_scaling = std
        rl.train.seed = config.tune.seed
        _check_run_settings(run_dir, rl)
        done = _trained(run_dir, rl.train.steps)
        what = f"{preset}, learning rate {lr:g}, std scaling {std}"
        if not _stage(f"tune {i}/{len(candidates)}: {what}", done):
            _train(rl, run_dir)
        score = validation_objective(run_dir / "export", preset, config, records,
                                     synthetic.SYNTHETIC_PROMPTS)  # fmt: skip
        results.setdefault(preset, {})[candidate_key(lr, std)] = score
        print(f"  {what}: validation reward {score['reward']:.4f}, pass@1 "
              f"{score['pass@1']:.3f}, ECE {score['ece']:.3f}", file=sys.stderr)  # fmt: skip
    chosen = {}
    for preset, scores in results.items():
        lr, _, std = max(scores, key=lambda k: scores[k]["reward"]).partition(",")
        chosen[preset] = {"learning_rate": float(lr), "std_scaling": std}
    out = {"criterion": "mean validation reward under the policy's own preset",
           "questions": len(records), "seed": config.tune.seed, "steps": config.rl.train.steps,
           "results": results, "chosen": chosen}  # fmt: skip
    write_atomic(workdir / "tune.json", json.dumps(out, indent=2) + "\n")
    write_atomic(workdir / "tune.md", tune_markdown(out))
    print(tune_markdown(out), flush=True)
    return out


def candidate_key(lr: float, std_scaling: str) -> str:
    """A candidate's name in tune.json: "2e-05,group"."""
    return f"{lr:g},{std_scaling}"


def tune_markdown(out: dict) -> str:
    lines = [
        f"# Demo tuning on the validation split ({out['questions']} questions, seed "
        f"{out['seed']}, {out['steps']} GRPO steps)",
        "",
        f"Criterion: {out['criterion']}.",
        "",
        "| reward | learning rate | std scaling | validation reward | pass@1 | ECE | chosen |",
        "|---|---|---|---|---|---|---|",
    ]
    for preset, scores in out["results"].items():
        best = out["chosen"][preset]
        for key, s in scores.items():
            lr, _, std = key.partition(",")
            mark = "yes" if key == candidate_key(best["learning_rate"], best["std_scaling"]) else ""
            lines.append(f"| {preset} | {lr} | {std} | {s['reward']:.4f} | {s['pass@1']:.3f} | "
                         f"{s['ece']:.3f} | {mark} |")  # fmt: skip
    lrs = {p: c["learning_rate"] for p, c in out["chosen"].items()}
    stds = {p: c["std_scaling"] for p, c in out["chosen"].items()}
    lines += ["", f"configs/demo.py: `c.learning_rates = {json.dumps(lrs)}`, "
              f"`c.std_scalings = {json.dumps(stds)}`"]  # fmt: skip
    return "\n".join(lines) + "\n"

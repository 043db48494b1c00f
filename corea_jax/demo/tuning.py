"""`corea-jax demo --config=configs/demo.py:tune`: each policy's learning rate, advantage std
scaling and calibration weight, chosen on the validation split by one procedure for every policy.

For each policy, learning rate of `tune.learning_rates`, std scaling of `tune.std_scalings`
(PAPER.md leaves it open) and calibration weight of `tune.calibration_weights` (the paper does
not give the weights; RLVR has no calibration term, so only its first weight is tried), a GRPO
policy is trained from the same warm start with the demo's budget and seed `tune.seed`. Each is
scored on `tune.questions` questions of the synthetic task's *validation* split (its
"calibration" split: problems hashed apart from train and test), G samples per question at the
rollout temperature, by `tune.objective`, declared before any test figure was seen and the same
for every policy (`OBJECTIVES`):
- "brier" (default): the lowest Brier score of the stated confidence (a proper score:
  calibration and ranking together; an invalid confidence reads as 0) among the candidates
  whose validation pass@1 is within `PASS_MARGIN` of the policy's best. Weight-free: the
  reward's scale grows with the calibration weight, so mean rewards of different weights
  cannot be compared.
- "reward": the highest mean reward under the policy's own preset (the earlier criterion;
  comparable only between candidates of one calibration weight).
The choice per policy is written to `tune.json` and `tune.md` with every candidate's figures;
the default demo config holds those choices. No test question is read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from corea_jax.atomic_files import write_atomic

PASS_MARGIN = 0.02  # "brier": candidates within 2 points of the best validation pass@1


def _best_reward(scores: dict) -> str:
    return max(scores, key=lambda k: scores[k]["reward"])


def _best_brier(scores: dict) -> str:
    top = max(s["pass@1"] for s in scores.values())
    eligible = {k: s for k, s in scores.items() if s["pass@1"] >= top - PASS_MARGIN - 1e-12}
    return min(eligible, key=lambda k: eligible[k]["brier"])


OBJECTIVES = {
    "brier": ("the lowest validation Brier score of the stated confidence among candidates "
              "within 2 points of the best validation pass@1", _best_brier),
    "reward": ("the highest mean validation reward under the policy's own preset",
               _best_reward),
}  # fmt: skip


def validation_scores(model_dir: Path, spec, records, templates, seed: int) -> dict:
    """A policy's figures on `records`, G samples each at the rollout temperature: its mean
    reward under its own reward settings, pass@1, ECE, Brier score and AUROC."""
    import jax.numpy as jnp

    from corea_jax.data import encode_prompt
    from corea_jax.models import load_model, load_tokenizer
    from corea_jax.rl.rollout_rewards import group_rewards, score_groups
    from corea_jax.sampling import Sampler, make_method
    from corea_jax.scoring import metrics
    from corea_jax.scoring.grading_workers import Grader
    from corea_jax.scoring.score import ScoreItem

    rollout = spec.run.rollout
    g = rollout.group_size
    tokenizer = load_tokenizer(model_dir)
    sampler = Sampler.for_tokenizer(load_model(model_dir, dtype=jnp.float32), tokenizer)
    prompts = [encode_prompt(r, tokenizer, templates) for r in records]
    out = sampler.generate(prompts, max_new_tokens=rollout.max_new_tokens, n=g,
                           method=make_method(rollout.temperature), seed=seed)  # fmt: skip
    texts = [tokenizer.decode(out.row_tokens(r), skip_special_tokens=True)
             for r in range(len(records) * g)]  # fmt: skip
    with Grader(workers=0) as grader:
        scored = score_groups(texts, [ScoreItem.from_record(r) for r in records], g, grader)
    parts = group_rewards(scored, texts, spec.run.reward.kernel())
    conf = np.where(scored.format_ok, scored.confidence_or(0.0), 0.0).reshape(-1)
    correct = np.asarray(scored.correct).reshape(-1)
    auroc = float(metrics.auroc(conf, correct)) if 0 < correct.mean() < 1 else float("nan")
    return {
        "reward": float(np.mean(parts["reward"])),
        "pass@1": float(correct.mean()),
        "ece": float(metrics.expected_calibration_error(conf, correct)),
        "brier": float(metrics.brier_score(conf, correct)),
        "auroc": auroc,
    }


def candidate_key(lr: float, std_scaling: str, weight: float = 1.0) -> str:
    """A candidate's name in tune.json: "2e-05,group,1"."""
    return f"{lr:g},{std_scaling},{weight:g}"


def run_name(policy: str, lr: float, std: str, weight: float) -> str:
    # "group" and weight 1 keep the names of runs made before they were tuned (reused).
    return (f"{policy}-lr{lr:g}" + ("" if std == "group" else f"-std_{std}")
            + ("" if weight == 1 else f"-w{weight:g}"))  # fmt: skip


def candidates(config) -> list[tuple[str, float, str, float]]:
    """(policy, learning rate, std scaling, calibration weight) of every run of the search."""
    from corea_jax.demo.settings import POLICIES
    from corea_jax.rl.rewards import PRESETS

    tune, out = config.tune, []
    for policy in config.policies:
        calibrated = PRESETS[POLICIES[policy][0]].calibration is not None
        weights = tune.calibration_weights if calibrated else tune.calibration_weights[:1]
        out += [(policy, lr, std, w) for lr in tune.learning_rates for std in tune.std_scalings
                for w in weights]  # fmt: skip
    return out


def run(config, workdir: Path) -> dict:
    """Trains every candidate, scores it on validation, writes the choice. Resumes: trained
    candidates are reused."""
    from corea_jax.data import synthetic
    from corea_jax.demo import stages

    workdir = Path(workdir)
    warm_dir = stages.warm_start(config, workdir)
    tune = config.tune
    records = synthetic.make_split(synthetic.SyntheticTask(), "calibration", tune.questions)
    results: dict = {}
    runs = candidates(config)
    for i, (policy, lr, std, w) in enumerate(runs, 1):
        spec = stages.policy_spec(config, warm_dir, policy, tune.seed, learning_rate=lr,
                                  std_scaling=std, calibration_weight=w)  # fmt: skip
        what = f"{policy}, learning rate {lr:g}, std scaling {std}, calibration weight {w:g}"
        export = stages.train_once(spec, workdir / "tune" / run_name(policy, lr, std, w),
                                   f"tune {i}/{len(runs)}: {what}")  # fmt: skip
        score = validation_scores(export, spec, records, synthetic.SYNTHETIC_PROMPTS, tune.seed)
        results.setdefault(policy, {})[candidate_key(lr, std, w)] = score
        print(f"  {what}: validation reward {score['reward']:.4f}, pass@1 "
              f"{score['pass@1']:.3f}, ECE {score['ece']:.3f}, Brier {score['brier']:.4f}, "
              f"AUROC {score['auroc']:.3f}", file=sys.stderr)  # fmt: skip
    criterion, best = OBJECTIVES[tune.objective]
    chosen = {}
    for policy, scores in results.items():
        lr, std, w = best(scores).split(",")
        chosen[policy] = {"learning_rate": float(lr), "std_scaling": std,
                          "calibration_weight": float(w)}  # fmt: skip
    out = {"objective": tune.objective, "criterion": criterion, "questions": len(records),
           "seed": tune.seed, "steps": config.rl.run.train.steps, "results": results,
           "chosen": chosen}  # fmt: skip
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
        "| policy | learning rate | std scaling | calibration weight | validation reward | "
        "pass@1 | ECE | Brier | AUROC | chosen |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for policy, scores in out["results"].items():
        best = out["chosen"][policy]
        mark_key = candidate_key(best["learning_rate"], best["std_scaling"],
                                 best["calibration_weight"])  # fmt: skip
        for key, s in scores.items():
            lr, std, w = key.split(",")
            lines.append(f"| {policy} | {lr} | {std} | {w} | {s['reward']:.4f} | "
                         f"{s['pass@1']:.3f} | {s['ece']:.3f} | {s['brier']:.4f} | "
                         f"{s['auroc']:.3f} | {'yes' if key == mark_key else ''} |")  # fmt: skip
    chosen = out["chosen"]

    def field(name):
        return json.dumps({p: c[name] for p, c in chosen.items()})

    lines += ["", f"configs/demo.py: `c.learning_rates = {field('learning_rate')}`, "
              f"`c.std_scalings = {field('std_scaling')}`, "
              f"`c.calibration_weights = {field('calibration_weight')}`"]  # fmt: skip
    return "\n".join(lines) + "\n"

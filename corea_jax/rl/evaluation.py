"""The held-out evaluation during training: greedy answers, scored by the one scoring path.

One greedy completion per question (no group), in batches of `batch_size` prompts, scored
with each question's `ScoreItem` as the cascade scores them. Reported as `eval/...`: pass@1,
format rate, ECE, AUROC, Brier and mean confidence; an invalid confidence counts as 0
(PAPER.md [open] 4).
"""

from __future__ import annotations

import numpy as np

from corea_jax.rl.rollout import Task, decode_rows
from corea_jax.sampling import Sampler
from corea_jax.sampling.sampler import GREEDY
from corea_jax.scoring import metrics as metrics_lib
from corea_jax.scoring.score import score_texts

EVAL_KEYS = ("pass@1", "format_rate", "ece", "auroc", "brier", "mean_confidence")


def evaluate(
    sampler: Sampler,
    tokenizer,
    task: Task,
    grader,
    *,
    params,
    batch_size: int,
    max_new_tokens: int,
) -> dict[str, float]:
    """Greedy answers to every question of `task` under `params` -> `eval/...` metrics."""
    texts = []
    for start in range(0, len(task.prompts), batch_size):
        out = sampler.generate(
            task.prompts[start : start + batch_size],
            max_new_tokens=max_new_tokens,
            method=GREEDY,
            params=params,
        )
        texts += decode_rows(tokenizer, out)
    scored = score_texts(texts, task.items, grader)
    summary = metrics_lib.calibration_summary(
        scored.correct,
        np.where(scored.confidence_valid, scored.confidence, 0.0),
        confidence_valid=scored.confidence_valid,
        format_ok=scored.format_ok,
    )
    return {f"eval/{k}": summary[k] for k in EVAL_KEYS}

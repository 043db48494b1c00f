"""Scored rollouts -> rewards, advantages and the rollout's metrics, all shaped [B, G].

Texts are scored once, on the host, by the one scoring path (`corea_jax.scoring.score`), with
each question's `ScoreItem` (so multiple-choice answers are read as letters and graded with
their options, exactly as the cascade grades them). What leaves is arrays: rewards
(`corea_jax.rl.rewards`) and group-relative advantages (`corea_jax.rl.advantages`).

An invalid confidence reads as 0 (PAPER.md [open] 4: a missing confidence means defer); the
reward kernel never reads it where the format failed.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from corea_jax.errors import CoreaError
from corea_jax.rl import advantages as adv_lib
from corea_jax.rl import rewards
from corea_jax.scoring import metrics as metrics_lib
from corea_jax.scoring.score import Scored, ScoreItem, score_texts


def load_extra_term(spec: str) -> Callable | None:
    """`package.module:function` -> the function (a user reward term, without editing us);
    "" -> None.

    The working directory is put on `sys.path` first, so a module next to where the command
    runs imports under the console script too (which, unlike `python -m`, does not add it).
    """
    if not spec:
        return None
    module, _, name = spec.partition(":")
    if not module or not name:
        raise CoreaError(f"reward.extra_term {spec!r}: expected 'module:function'")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise CoreaError(f"reward.extra_term {spec!r}: cannot import ({e})") from e


def score_groups(
    texts: Sequence[str], items: Sequence[ScoreItem], group_size: int, grader
) -> Scored:
    """R = B * G texts, the B questions' items -> a `Scored` viewed [B, G]."""
    b, g = len(items), group_size
    return score_texts(texts, [item for item in items for _ in range(g)], grader).grouped(b, g)


def group_rewards(
    scored: Scored,
    texts: Sequence[str],
    config: rewards.RewardConfig,
    extra_term: Callable | None = None,
) -> dict[str, jnp.ndarray]:
    """[B, G] scores -> {"reward": [B, G], and its parts (+ "extra" with a user term)}."""
    correct = jnp.asarray(scored.correct)
    confidence = jnp.asarray(scored.confidence_or(0.0))
    format_ok = jnp.asarray(scored.format_ok)
    parts = rewards.compute_rewards(correct, confidence, format_ok, config)
    if extra_term is None:
        return parts
    b, g = scored.correct.shape
    extra = extra_term(correct=correct, confidence=confidence, format_ok=format_ok, texts=texts)
    extra = jnp.asarray(extra, jnp.float32)
    if extra.shape not in ((b, g), (b * g,)):  # a [G, B] array must not slip through
        raise CoreaError(
            f"reward.extra_term {extra_term.__name__}: returned shape {extra.shape}, "
            f"expected [{b}, {g}] (prompts x group)"
        )
    extra = extra.reshape(b, g)
    return dict(parts, reward=parts["reward"] + extra, extra=extra)


def rollout_metrics(scored: Scored, parts: dict, zero_variance_fraction) -> dict:
    """Means of the reward parts, accuracy, format rate, the confidences and the batch ECE."""
    conf = scored.confidence_or(0.0)[scored.format_ok]
    return {
        "reward": float(jnp.mean(parts["reward"])),
        **{f"reward/{k}": float(jnp.mean(v)) for k, v in parts.items() if k != "reward"},
        "accuracy": float(scored.correct.mean()),
        "format_rate": float(scored.format_ok.mean()),
        "confidence_mean": float(conf.mean()) if conf.size else float("nan"),
        "confidence_hist": np.histogram(conf, bins=10, range=(0, 1))[0].tolist(),
        # Invalid confidences count as 0 (the deferral rule's reading of them).
        "batch_ece": float(
            metrics_lib.expected_calibration_error(
                jnp.asarray(np.where(scored.format_ok, scored.confidence_or(0.0), 0.0)),
                jnp.asarray(scored.correct),
            )
        ),
        "zero_variance_groups": float(zero_variance_fraction),
    }


def rewards_and_advantages(
    scored: Scored,
    texts: Sequence[str],
    reward: rewards.RewardConfig,
    advantage: adv_lib.AdvantageConfig,
    extra_term: Callable | None = None,
) -> tuple[np.ndarray, dict]:
    """[B, G] scores -> advantages [R] (row-major, one per completion) and the metrics."""
    parts = group_rewards(scored, texts, reward, extra_term)
    adv, stats = adv_lib.group_advantages(parts["reward"], advantage)
    metrics = rollout_metrics(scored, parts, stats["zero_variance_fraction"])
    return np.asarray(adv).reshape(-1), metrics

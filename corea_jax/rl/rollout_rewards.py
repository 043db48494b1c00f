"""Scored rollouts -> rewards, advantages and the rollout's metrics, all shaped [B, G].

Texts are scored once, on the host, by the one scoring path (`corea_jax.scoring.score`), with
each question's `ScoreItem` (so multiple-choice answers are read as letters and graded with
their options, exactly as the cascade grades them). What leaves is arrays: rewards
(`corea_jax.rl.rewards`) and group-relative advantages (`corea_jax.rl.advantages`): one per
completion, `[R]`, or with `AdvantageConfig.spans="confidence"` one per completion token,
`[R, C]`, from the confidence span mask (`corea_jax.rl.spans`).

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
from corea_jax.rl.diagnostics import rollout_diagnostics
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


def rollout_metrics(
    scored: Scored, parts: dict, zero_variance_fraction, levels: Sequence[str | None] | None = None
) -> dict:
    """Means of the reward parts, accuracy, format rate, the confidences, the batch ECE and the
    diagnostics of `corea_jax.rl.diagnostics` (per-level keys when `levels`, the B questions'
    levels, is given)."""
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
        **rollout_diagnostics(scored.confidence_or(0.0), scored.correct, scored.format_ok, levels),
    }


def has_calibration_term(config: rewards.RewardConfig) -> bool:
    """The reward has a calibration term to give the confidence span (not rlvr, weight != 0)."""
    return config.calibration is not None and config.calibration_weight != 0


def rewards_and_advantages(
    scored: Scored,
    texts: Sequence[str],
    reward: rewards.RewardConfig,
    advantage: adv_lib.AdvantageConfig,
    extra_term: Callable | None = None,
    *,
    span_mask: np.ndarray | None = None,
    levels: Sequence[str | None] | None = None,
) -> tuple[np.ndarray, dict]:
    """[B, G] scores -> advantages and the metrics.

    Advantages are row-major (row r = prompt r // G, sample r % G): `[R]` with
    `advantage.spans="none"`; `[R, C]` with "confidence", where `span_mask` `[R, C]`
    (`spans.confidence_span_mask`) marks each row's confidence-span tokens. Those get the
    calibration advantage where the sample's format is valid and the reward has a calibration
    term; every other slot the advantage of the reward without its calibration term
    (`corea_jax.rl.advantages`). Without a calibration term (`has_calibration_term`) every
    slot gets the one-advantage update's value, so the split is then exactly that update.
    `levels`: the B questions' levels, for the per-level metrics.
    """
    parts = group_rewards(scored, texts, reward, extra_term)
    if advantage.spans == "none":
        adv, stats = adv_lib.group_advantages(parts["reward"], advantage)
        metrics = rollout_metrics(scored, parts, stats["zero_variance_fraction"], levels)
        return np.asarray(adv).reshape(-1), metrics
    b, g = scored.correct.shape
    if span_mask is None or span_mask.shape[0] != b * g:
        raise CoreaError(
            f"advantage.spans={advantage.spans!r}: needs the [{b * g}, C] confidence span mask"
        )
    span = jnp.asarray(span_mask, bool).reshape(b, g, -1)
    if not has_calibration_term(reward):
        adv, stats = adv_lib.group_advantages(parts["reward"], advantage)
        token_adv = adv_lib.token_advantages(adv, adv, span)
        metrics = rollout_metrics(scored, parts, stats["zero_variance_fraction"], levels)
    else:
        outcome = rewards.outcome_reward(parts, reward) + parts.get("extra", 0.0)
        rest, stats = adv_lib.group_advantages(outcome, advantage)
        format_ok = jnp.asarray(scored.format_ok)
        confidence, cal_stats = adv_lib.calibration_advantages(
            reward.calibration_weight * parts["calibration"], jnp.asarray(scored.correct),
            format_ok, advantage,
        )  # fmt: skip
        token_adv = adv_lib.token_advantages(rest, confidence, span & format_ok[..., None])
        metrics = rollout_metrics(scored, parts, stats["zero_variance_fraction"], levels)
        metrics["zero_variance_groups/confidence"] = float(cal_stats["zero_variance_fraction"])
        metrics["confidence_span_tokens"] = float(jnp.sum(span & format_ok[..., None]) / (b * g))
    return np.asarray(token_adv).reshape(b * g, -1), metrics

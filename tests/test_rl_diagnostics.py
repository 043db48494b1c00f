"""Per-step training diagnostics on a hand-made scored batch: per-level confidence beside
accuracy, the within-group SD of q, the all-right / all-wrong group shares, the batch AUROC."""

import math

import jax
import numpy as np
import pytest

from corea_jax.data.records import Record
from corea_jax.rl import rewards
from corea_jax.rl.advantages import AdvantageConfig
from corea_jax.rl.diagnostics import (
    group_confidence_sd,
    group_outcome_shares,
    rollout_diagnostics,
)
from corea_jax.rl.rollout_rewards import rewards_and_advantages
from corea_jax.rl.task import record_level
from corea_jax.scoring.score import Scored

NAN = float("nan")
# B = 3 questions, G = 4. Group 0 (level 1x1): all right, the last sample's format failed.
# Group 1 (level 2x3): all wrong, two valid. Group 2 (level 1x1): half right, all at 0.5.
CORRECT = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]], bool)
CONF = np.array([[0.9, 0.7, 0.8, NAN], [0.6, 0.2, NAN, NAN], [0.5, 0.5, 0.5, 0.5]])
VALID = ~np.isnan(CONF)
LEVELS = ["1x1", "2x3", "1x1"]


def scored_batch() -> Scored:
    n = CORRECT.size
    return Scored(
        answer=["a"] * n, confidence=CONF, confidence_valid=VALID, format_ok=VALID,
        correct=CORRECT, format_reason=[""] * n, grade_method=[""] * n, grade_reason=[""] * n,
    )  # fmt: skip


def test_hand_computed_diagnostics():
    got = rollout_diagnostics(np.nan_to_num(CONF), CORRECT, VALID, LEVELS)
    # Population SDs of the valid q: (0.9, 0.7, 0.8) -> sqrt(0.02 / 3); (0.6, 0.2) -> 0.2;
    # (0.5 x 4) -> 0.
    assert got["confidence_group_sd"] == pytest.approx((math.sqrt(0.02 / 3) + 0.2 + 0) / 3)
    assert got["groups_all_correct"] == pytest.approx(1 / 3)
    assert got["groups_all_wrong"] == pytest.approx(1 / 3)
    # Invalid q read as 0. Right: .9 .7 .8 0 .5 .5; wrong: .6 .2 0 0 .5 .5. Pairs won (ties
    # half): 6 + 6 + 6 + 1 + 4 + 4 = 27 of 36.
    assert got["batch_auroc"] == pytest.approx(0.75)
    # Level 1x1: valid q .9 .7 .8 and four .5 -> 4.4 / 7; 6 right of 8. Level 2x3: .6, .2; 0.
    assert got["level/1x1/confidence"] == pytest.approx(4.4 / 7)
    assert got["level/1x1/accuracy"] == pytest.approx(0.75)
    assert got["level/2x3/confidence"] == pytest.approx(0.4)
    assert got["level/2x3/accuracy"] == 0.0
    assert not any(k.startswith("level/") for k in rollout_diagnostics(CONF, CORRECT, VALID))


def test_undefined_diagnostics_are_nan():
    correct = np.ones((2, 3), bool)
    valid = np.array([[1, 0, 0], [0, 0, 0]], bool)  # no group with 2 valid samples
    got = rollout_diagnostics(np.full((2, 3), 0.7), correct, valid, ["a", "b"])
    assert math.isnan(got["confidence_group_sd"])
    assert math.isnan(got["batch_auroc"])  # every answer right
    assert got["groups_all_correct"] == 1.0 and got["groups_all_wrong"] == 0.0
    assert got["level/a/confidence"] == pytest.approx(0.7)
    assert math.isnan(got["level/b/confidence"]) and got["level/b/accuracy"] == 1.0
    # A question with no level gets no key; the others still do.
    got = rollout_diagnostics(np.full((2, 3), 0.7), correct, valid, [None, "b"])
    assert [k for k in got if k.startswith("level/")] == ["level/b/confidence", "level/b/accuracy"]


def test_array_diagnostics_are_jittable_and_ignore_invalid_values():
    q = np.where(VALID, CONF, 123.0).astype(np.float32)  # invalid q must not matter
    sd = jax.jit(group_confidence_sd)(q, VALID)
    assert float(sd) == pytest.approx((math.sqrt(0.02 / 3) + 0.2) / 3, rel=1e-5)
    right, wrong = jax.jit(group_outcome_shares)(CORRECT)
    assert float(right) == pytest.approx(1 / 3) and float(wrong) == pytest.approx(1 / 3)


def test_the_rollout_metrics_carry_the_diagnostics():
    scored = scored_batch()
    for config in (AdvantageConfig(), AdvantageConfig(spans="confidence")):
        span = np.zeros((12, 3), bool) if config.spans == "confidence" else None
        _, metrics = rewards_and_advantages(
            scored, ["t"] * 12, rewards.PRESETS["corea"], config, span_mask=span, levels=LEVELS
        )
        assert metrics["batch_auroc"] == pytest.approx(0.75)
        assert metrics["level/1x1/accuracy"] == pytest.approx(0.75)
        assert metrics["groups_all_wrong"] == pytest.approx(1 / 3)
        assert {"confidence_group_sd", "groups_all_correct", "level/2x3/confidence"} <= set(metrics)


def test_record_levels():
    synthetic = Record("s", "q", "1", "numeric", metadata={"steps": 2, "digits": 3})
    assert record_level(synthetic) == "2x3"
    assert record_level(Record("m", "q", "1", "math", metadata={"level": "Level 3"})) == "Level_3"
    assert record_level(Record("m", "q", "1", "math", metadata={"level": 4})) == "4"
    assert record_level(Record("d", "q", "1", "math", metadata={"topic": "x"})) is None

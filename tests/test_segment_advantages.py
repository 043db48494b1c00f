"""Segment-wise advantages (advantage.spans="confidence"): hand tables of the calibration
advantage (group and outcome baselines) and of the per-token advantages of a tiny batch, and
the invariant that without a calibration term the split is exactly the one-advantage update."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corea_jax.errors import CoreaError
from corea_jax.rl import grpo, rewards
from corea_jax.rl.advantages import (
    AdvantageConfig,
    calibration_advantages,
    group_advantages,
    token_advantages,
)
from corea_jax.rl.rollout_rewards import rewards_and_advantages
from corea_jax.scoring.score import Scored

calibration_jit = jax.jit(calibration_advantages, static_argnames="config")


def scored_batch(correct, confidence, format_ok) -> Scored:
    """A hand-made [B, G] Scored (no texts are parsed: the arrays are the scores)."""
    correct, format_ok = np.asarray(correct, bool), np.asarray(format_ok, bool)
    confidence = np.where(format_ok, np.asarray(confidence, np.float64), np.nan)
    n = correct.size
    return Scored(
        answer=["a"] * n, confidence=confidence, confidence_valid=format_ok, format_ok=format_ok,
        correct=correct, format_reason=[""] * n, grade_method=[""] * n, grade_reason=[""] * n,
    )  # fmt: skip


# B = 1, G = 4: right at 0.9, right at 0.5, wrong at 0.2, and a failed format (confidence never
# read). COREA (L1 to p_hat = 0.5, weights 1): calibration -0.4, 0, -0.3 and 0 (failed).
CORRECT = [[1, 1, 0, 0]]
CONF = [[0.9, 0.5, 0.2, 0.7]]
FORMAT = [[1, 1, 1, 0]]
# C = 6 slots; the span tokens of each row (row 3's span is ignored: its format failed).
SPAN = np.array(
    [
        [0, 0, 0, 1, 1, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 0],
    ],
    bool,
)
# The rest: c + f = 2, 2, 1, 0, mean 1.25 -> 0.75, 0.75, -0.25, -1.25.
REST = [0.75, 0.75, -0.25, -1.25]
# Group baseline over the 3 valid samples: mean -0.7/3 -> -1/6, 0.7/3, -0.2/3 (and 0).
GROUP_CAL = [-1 / 6, 0.7 / 3, -0.2 / 3, 0.0]
# Outcome baseline: the right ones (-0.4, 0) around -0.2 -> -0.2, 0.2; the one valid wrong
# sample is a set of one -> 0; the failed one -> 0.
OUTCOME_CAL = [-0.2, 0.2, 0.0, 0.0]


def _hand_table(cal):
    r, c = REST, cal
    return np.array(
        [
            [r[0], r[0], r[0], c[0], c[0], r[0]],
            [r[1], r[1], c[1], c[1], r[1], r[1]],
            [r[2], c[2], c[2], r[2], r[2], r[2]],
            [r[3]] * 6,  # format failed: every token gets the rest's advantage
        ]
    )


@pytest.mark.parametrize("baseline, cal", [("group", GROUP_CAL), ("outcome", OUTCOME_CAL)])
def test_hand_table_of_per_token_advantages(baseline, cal):
    config = AdvantageConfig(spans="confidence", confidence_baseline=baseline)
    scored = scored_batch(CORRECT, CONF, FORMAT)
    adv, metrics = rewards_and_advantages(
        scored, ["t"] * 4, rewards.PRESETS["corea"], config, span_mask=SPAN
    )
    assert adv.shape == (4, 6) and adv.dtype == np.float32
    np.testing.assert_allclose(adv, _hand_table(cal), atol=1e-6)
    assert metrics["confidence_span_tokens"] == pytest.approx(6 / 4)  # rows 0-2: 2 each


def test_outcome_baseline_hand_values_rloo_and_std_scaling():
    # Group 0: all valid; right ones -0.1, -0.3, -0.2 (mean -0.2), one wrong (a set of one).
    # Group 1: two right, two wrong, one wrong sample invalid.
    cal = np.array([[-0.1, -0.3, -0.2, -0.5], [-0.2, 0.0, -0.6, -1.0]], np.float32)
    correct = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    valid = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool)
    mean = AdvantageConfig(spans="confidence", confidence_baseline="outcome")
    adv, stats = calibration_jit(cal, correct, valid, config=mean)
    np.testing.assert_allclose(adv, [[0.1, -0.1, 0, 0], [-0.1, 0.1, 0, 0]], atol=1e-6)
    assert float(stats["zero_variance_fraction"]) == 0.0
    # RLOO: minus the mean of the *other* members of the set: (-0.3 - 0.2) / 2 for sample 0.
    rloo = AdvantageConfig(baseline="rloo", spans="confidence", confidence_baseline="outcome")
    adv, _ = calibration_jit(cal, correct, valid, config=rloo)
    np.testing.assert_allclose(adv, [[0.15, -0.15, 0, 0], [-0.2, 0.2, 0, 0]], atol=1e-6)
    # Group std scaling: the unbiased std of the group's *valid* calibration rewards.
    # Group 0: deviations from -0.275: .175, -.025, .075, -.225, squares sum .0875, / 3.
    # Group 1: -0.2, 0, -0.6 around -4/15: squares 1/225 + 16/225 + 25/225 = 42/225, / 2.
    scaled = AdvantageConfig(std_scaling="group", eps=0.0, spans="confidence",
                             confidence_baseline="outcome")  # fmt: skip
    adv, _ = calibration_jit(cal, correct, valid, config=scaled)
    s0, s1 = np.sqrt(0.0875 / 3), np.sqrt(42 / 225 / 2)
    np.testing.assert_allclose(adv, [[0.1 / s0, -0.1 / s0, 0, 0], [-0.1 / s1, 0.1 / s1, 0, 0]],
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_group_baseline_with_every_sample_valid_is_group_advantages():
    rng = np.random.default_rng(0)
    cal = -rng.random((5, 8)).astype(np.float32)
    correct = rng.random((5, 8)) < 0.5
    valid = np.ones((5, 8), bool)
    for baseline in ("mean", "rloo"):
        for scaling in ("none", "group", "batch"):
            config = AdvantageConfig(baseline, scaling, spans="confidence")
            want, _ = group_advantages(cal, config)
            got, _ = calibration_jit(cal, correct, valid, config=config)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_sets_without_a_comparison_get_exactly_zero():
    cal = np.array([[-0.3, -0.3, -0.1, -0.7], [-0.5, -0.2, -0.4, -0.9]], np.float32)
    correct = np.array([[1, 1, 0, 1], [0, 1, 1, 1]], bool)
    valid = np.array([[1, 1, 1, 1], [1, 0, 0, 0]], bool)  # group 1: one valid sample
    config = AdvantageConfig(spans="confidence", confidence_baseline="outcome")
    adv, stats = calibration_jit(cal, correct, valid, config=config)
    # Group 0's right set -0.3, -0.3, -0.7 (mean -13/30); its wrong set is one sample.
    np.testing.assert_allclose(adv[0], [0.4 / 3, 0.4 / 3, 0, -0.8 / 3], atol=1e-6)
    assert np.all(np.asarray(adv[1]) == 0.0)
    assert float(stats["zero_variance_fraction"]) == 0.5  # group 1 has no calibration signal
    flat = np.full((1, 4), -0.2, np.float32)
    adv, _ = calibration_jit(flat, correct[:1], valid[:1], config=config)
    assert np.all(np.asarray(adv) == 0.0)


def test_token_advantages_put_the_confidence_value_on_the_span():
    rest = jnp.array([[1.0, -1.0]])
    conf = jnp.array([[0.5, 0.25]])
    span = jnp.array([[[0, 1, 1], [1, 0, 0]]], bool)
    np.testing.assert_array_equal(
        token_advantages(rest, conf, span), [[[1, 0.5, 0.5], [0.25, -1, -1]]]
    )


def _loss_and_grad(adv, seed=0):
    rng = np.random.default_rng(seed)
    r, c = adv.shape[0], SPAN.shape[1]
    logp = jnp.asarray(-rng.random((r, c)), jnp.float32)
    old = logp + jnp.asarray(rng.normal(0, 0.3, (r, c)), jnp.float32)  # some ratios clip
    weights = grpo.loss_weights(jnp.ones((r, c)), grpo.LossConfig())
    fn = lambda lp: grpo.policy_loss(lp, old, adv, weights, grpo.LossConfig())[0]  # noqa: E731
    return jax.value_and_grad(fn)(logp)


@pytest.mark.parametrize(
    "reward",
    [rewards.PRESETS["rlvr"], rewards.reward_config("corea", calibration_weight=0.0)],
    ids=["rlvr", "corea_weight_0"],
)
@pytest.mark.parametrize("baseline", ["group", "outcome"])
@pytest.mark.parametrize("scaling", ["none", "group"])
def test_without_a_calibration_term_the_split_is_the_rlvr_update(reward, baseline, scaling):
    scored = scored_batch(CORRECT, CONF, FORMAT)
    one = AdvantageConfig(std_scaling=scaling)
    split = AdvantageConfig(std_scaling=scaling, spans="confidence", confidence_baseline=baseline)
    rlvr, _ = rewards_and_advantages(scored, ["t"] * 4, rewards.PRESETS["rlvr"], one)
    adv, _ = rewards_and_advantages(scored, ["t"] * 4, reward, split, span_mask=SPAN)
    assert rlvr.shape == (4,) and adv.shape == (4, 6)
    np.testing.assert_array_equal(adv, np.broadcast_to(rlvr[:, None], (4, 6)))
    loss, grad = _loss_and_grad(jnp.asarray(adv))
    want_loss, want_grad = _loss_and_grad(jnp.asarray(rlvr))  # the [R] call: broadcast
    assert float(loss) == float(want_loss)
    np.testing.assert_array_equal(grad, want_grad)


def test_the_rest_tokens_get_the_reward_without_calibration():
    rng = np.random.default_rng(4)
    correct = rng.random((3, 4)) < 0.5
    conf = rng.random((3, 4))
    fmt = rng.random((3, 4)) < 0.8
    span = rng.random((12, 5)) < 0.3
    scored = scored_batch(correct, conf, fmt)
    config = AdvantageConfig(spans="confidence")
    adv, _ = rewards_and_advantages(scored, ["t"] * 12, rewards.PRESETS["corea"], config,
                                    span_mask=span)  # fmt: skip
    outcome = correct.astype(np.float32) + fmt.astype(np.float32)
    rest, _ = group_advantages(outcome, config)
    rest = np.broadcast_to(np.asarray(rest).reshape(12, 1), (12, 5))
    off_span = ~(span & fmt.reshape(12, 1))
    np.testing.assert_allclose(adv[off_span], rest[off_span], atol=1e-6)


def test_spans_need_a_mask_and_known_names():
    scored = scored_batch(CORRECT, CONF, FORMAT)
    with pytest.raises(CoreaError, match=r"needs the \[4, C\] confidence span mask"):
        rewards_and_advantages(scored, ["t"] * 4, rewards.PRESETS["corea"],
                               AdvantageConfig(spans="confidence"))  # fmt: skip
    with pytest.raises(CoreaError, match="advantage.spans='answer'"):
        AdvantageConfig(spans="answer")
    with pytest.raises(CoreaError, match="advantage.confidence_baseline='stratum'"):
        AdvantageConfig(confidence_baseline="stratum")

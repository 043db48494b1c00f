"""Reward kernels: hand-computed tables for every preset and option, all under jax.jit."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corea_jax.errors import CoreaError
from corea_jax.rl.rewards import (
    PRESETS,
    RewardConfig,
    RewardPresetConfig,
    compute_rewards,
    group_accuracy,
    group_accuracy_loo,
    kl_distance,
    reward_config,
)

rewards_jit = jax.jit(compute_rewards, static_argnames="config")

# Two prompts, four samples each. Prompt 0: half right (p_hat = 0.5), the last sample's format
# failed (its confidence is NaN and must never be read). Prompt 1: all right (p_hat = 1).
CORRECT = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
CONF = np.array([[0.9, 0.5, 0.2, np.nan], [0.8, 1.0, 0.5, 0.9]], np.float32)
FORMAT = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)

# calibration = -distance(q, target), by hand; 0 where the format failed (corea_kl: minus the
# worst distance any q could have had).
LN = math.log
TABLE = {
    "rlvr": [[0, 0, 0, 0], [0, 0, 0, 0]],
    # L1 to p_hat: |0.9-.5|, |.5-.5|, |.2-.5| ; |.8-1|, |1-1|, |.5-1|, |.9-1|
    "corea": [[-0.4, 0, -0.3, 0], [-0.2, 0, -0.5, -0.1]],
    "corea_l2": [[-0.16, 0, -0.09, 0], [-0.04, 0, -0.25, -0.01]],
    # Brier: the target is the sample's own c: (.9-1)^2, (.5-1)^2, (.2-0)^2 ; as corea_l2 above
    "brier": [[-0.01, -0.25, -0.04, 0], [-0.04, 0, -0.25, -0.01]],
    # KL(Bern(p) || Bern(q)): p = .5, q = .9 -> .5 ln(.5/.9) + .5 ln(.5/.1) = ln(5/3);
    # q = .2 -> .5 ln(2.5) + .5 ln(.625) = ln(1.25). p = 1: -ln q, with q = 1 clipped to .99.
    # Failed format, p = .5: the worst q is clipped 0.01 (or .99): .5 ln(.5/.01) + .5 ln(.5/.99).
    "corea_kl": [
        [-LN(5 / 3), 0, -LN(1.25), -0.5 * LN(0.5 / 0.01 * 0.5 / 0.99)],
        [-LN(1.25), -LN(1 / 0.99), -LN(2), -LN(10 / 9)],
    ],
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_tables(preset):
    out = rewards_jit(CORRECT, CONF, FORMAT, config=PRESETS[preset])
    calibration = np.array(TABLE[preset], np.float32)
    c, f = CORRECT.astype(np.float32), FORMAT.astype(np.float32)
    np.testing.assert_allclose(out["calibration"], calibration, atol=1e-6)
    np.testing.assert_allclose(out["reward"], c + f + calibration, atol=1e-6)
    np.testing.assert_array_equal(out["correctness"], c)
    np.testing.assert_array_equal(out["format"], f)
    for value in out.values():
        assert value.shape == (2, 4) and value.dtype == jnp.float32
        assert np.all(np.isfinite(value))


def test_totals_written_out_for_corea():
    """The L1 preset's total, entry by entry: c + f - |q - p_hat|."""
    out = rewards_jit(CORRECT, CONF, FORMAT, config=PRESETS["corea"])
    np.testing.assert_allclose(
        out["reward"], [[1.6, 2.0, 0.7, 0.0], [1.8, 2.0, 1.5, 1.9]], atol=1e-6
    )
    np.testing.assert_allclose(out["target"], [[0.5] * 4, [1.0] * 4])


def test_brier_preset_is_rlcr_reward():
    """RLCR's sample-level reward c - (q - c)^2, plus the format term."""
    out = rewards_jit(CORRECT, CONF, FORMAT, config=PRESETS["brier"])
    q = np.nan_to_num(CONF)
    c = CORRECT.astype(np.float32)
    expected = np.where(FORMAT, c - (q - c) ** 2 + 1.0, c)
    np.testing.assert_allclose(out["reward"], expected, atol=1e-6)


def test_weights():
    config = reward_config(
        "corea", correctness_weight=2.0, format_weight=0.0, calibration_weight=0.5
    )
    out = rewards_jit(CORRECT, CONF, FORMAT, config=config)
    calibration = np.array(TABLE["corea"], np.float32)
    np.testing.assert_allclose(out["reward"], 2.0 * CORRECT + 0.5 * calibration, atol=1e-6)
    np.testing.assert_allclose(out["calibration"], calibration, atol=1e-6)  # logged unweighted


def test_leave_one_out_target():
    # prompt 0: the others of a correct sample hold 1 of 3 correct; of a wrong one, 2 of 3.
    np.testing.assert_allclose(
        group_accuracy_loo(jnp.asarray(CORRECT))[0], [1 / 3, 1 / 3, 2 / 3, 2 / 3]
    )
    out = rewards_jit(CORRECT, CONF, FORMAT, config=reward_config("corea", target="group_loo"))
    np.testing.assert_allclose(
        out["calibration"][0], [-(0.9 - 1 / 3), -(0.5 - 1 / 3), -(2 / 3 - 0.2), 0.0], atol=1e-6
    )


def test_kl_eps_option():
    config = reward_config("corea_kl", kl_eps=0.1)
    out = rewards_jit(CORRECT, CONF, FORMAT, config=config)
    # q = 1 is clipped to 0.9 now: -ln(1/0.9)
    assert float(out["calibration"][1, 1]) == pytest.approx(-LN(1 / 0.9), abs=1e-6)


def test_kl_is_zero_at_the_target_and_finite_at_the_edges():
    p = jnp.array([0.0, 0.3, 1.0, 0.0, 1.0])
    q = jnp.array([0.0, 0.3, 1.0, 1.0, 0.0])
    d = np.asarray(jax.jit(kl_distance, static_argnums=2)(q, p, 0.01))
    np.testing.assert_allclose(d[1], 0.0, atol=1e-6)
    np.testing.assert_allclose(d[[0, 2]], [-LN(0.99)] * 2, atol=1e-6)
    np.testing.assert_allclose(d[[3, 4]], [LN(100)] * 2, atol=1e-4)  # the bound log(1/eps)


@pytest.mark.parametrize("preset", ["corea", "corea_l2", "corea_kl", "brier"])
def test_calibration_term_is_never_positive_and_zero_without_format(preset):
    rng = np.random.default_rng(0)
    correct = rng.random((16, 8)) < 0.4
    conf = rng.random((16, 8)).astype(np.float32)
    fmt = rng.random((16, 8)) < 0.8
    conf[~fmt] = np.nan
    out = rewards_jit(correct, conf, fmt, config=PRESETS[preset])
    assert np.all(out["calibration"] <= 0)
    if PRESETS[preset].failed_calibration == "zero":
        assert np.all(out["calibration"][~fmt] == 0)
    assert np.all(np.isfinite(out["reward"]))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_failed_format_never_pays_more_than_any_valid_answer(preset):
    """Same correctness, same group: dropping or garbling the confidence tag scores no more
    than stating any confidence at all (before, corea_kl paid 0 for a failure and down to
    1 - ln(100) for a valid, confidently wrong answer)."""
    rng = np.random.default_rng(1)
    correct = rng.random((64, 8)) < 0.5
    fmt = rng.random((64, 8)) < 0.7
    worst_valid = np.full((64, 8), np.inf, np.float32)
    for q in np.linspace(0.0, 1.0, 21, dtype=np.float32):
        out = rewards_jit(correct, np.full((64, 8), q), np.ones((64, 8), bool),
                          config=PRESETS[preset])  # fmt: skip
        worst_valid = np.minimum(worst_valid, np.asarray(out["reward"]))
    # the same groups (same p_hat) with some formats failed: compare sample by sample
    failed = rewards_jit(correct, np.full((64, 8), np.nan, np.float32), fmt, config=PRESETS[preset])
    assert np.all(np.asarray(failed["reward"])[~fmt] <= worst_valid[~fmt] + 1e-6)


def test_a_calibrated_group_loses_nothing():
    """Stating exactly the group accuracy costs zero under the group-target distances."""
    correct = jnp.array([[1, 0, 0, 1], [1, 1, 1, 0]], bool)
    conf = group_accuracy(correct)
    fmt = jnp.ones((2, 4), bool)
    for preset in ("corea", "corea_l2", "corea_kl"):
        out = rewards_jit(correct, conf, fmt, config=PRESETS[preset])
        np.testing.assert_allclose(out["calibration"], 0.0, atol=1e-6)


def test_jit_matches_eager():
    for config in PRESETS.values():
        eager = compute_rewards(
            jnp.asarray(CORRECT), jnp.asarray(CONF), jnp.asarray(FORMAT), config
        )
        jitted = rewards_jit(CORRECT, CONF, FORMAT, config=config)
        for key in eager:
            np.testing.assert_allclose(eager[key], jitted[key], atol=1e-6)


def test_bad_configs_are_user_errors():
    with pytest.raises(CoreaError, match="calibration='l3'"):
        RewardConfig(calibration="l3")
    with pytest.raises(CoreaError, match="target"):
        RewardConfig(target="batch")
    with pytest.raises(CoreaError, match="kl_eps"):
        RewardConfig(kl_eps=0.0)
    with pytest.raises(CoreaError, match="preset 'rlcc'"):
        reward_config("rlcc")
    with pytest.raises(CoreaError, match="wieght"):
        reward_config("corea", wieght=1.0)
    with pytest.raises(CoreaError, match="G=1"):
        compute_rewards(
            jnp.ones((2, 1)),
            jnp.ones((2, 1)),
            jnp.ones((2, 1), bool),
            reward_config("corea", target="group_loo"),
        )


def test_readme_extra_term_example_is_a_pure_jittable_group_kernel():
    from reward_terms import overconfidence_penalty

    correct = jnp.array([[1, 0, 0], [0, 1, 0]])
    confidence = jnp.array([[0.95, 0.95, 0.5], [1.0, 0.2, 0.99]])
    format_ok = jnp.array([[True, True, True], [True, True, False]])
    texts = [""] * 6
    want = np.array([[0, -0.5, 0], [-0.5, 0, 0]], np.float32)
    np.testing.assert_array_equal(
        overconfidence_penalty(correct, confidence, format_ok, texts), want
    )
    jitted = jax.jit(lambda c, q, f: overconfidence_penalty(c, q, f, None))
    np.testing.assert_array_equal(jitted(correct, confidence, format_ok), want)


@pytest.mark.parametrize("mix", [0.0, 0.5, 1.0])
def test_target_mix_blends_the_group_target_with_the_samples_correctness(mix):
    # Prompt 0: p_hat = 0.5; right samples' target 0.5 * mix + (1 - mix), wrong ones' 0.5 * mix.
    # mix = 0.5 (DCPO): 0.75 and 0.25, so L1: |.9-.75|, |.5-.75|, |.2-.25| = .15, .25, .05.
    # Prompt 1: p_hat = 1 and every sample right: the target is 1 whatever the mix.
    config = reward_config("corea", target_mix=mix)
    out = rewards_jit(CORRECT, CONF, FORMAT, config=config)
    right, wrong = 0.5 * mix + (1 - mix), 0.5 * mix
    np.testing.assert_allclose(out["target"], [[right, right, wrong, wrong], [1.0] * 4], atol=1e-6)
    want = {
        0.0: [[-0.1, -0.5, -0.2, 0], [-0.2, 0, -0.5, -0.1]],  # the sample target (c)
        0.5: [[-0.15, -0.25, -0.05, 0], [-0.2, 0, -0.5, -0.1]],
        1.0: TABLE["corea"],
    }[mix]
    np.testing.assert_allclose(out["calibration"], want, atol=1e-6)


def test_target_mix_one_is_exactly_the_group_target():
    default = rewards_jit(CORRECT, CONF, FORMAT, config=PRESETS["corea"])
    mixed = rewards_jit(CORRECT, CONF, FORMAT, config=reward_config("corea", target_mix=1.0))
    assert PRESETS["corea"].target_mix == 1.0
    for key in default:
        np.testing.assert_array_equal(mixed[key], default[key])
    # mix 0 is the sample target: corea_l2 with target_mix 0 is the Brier calibration term.
    l2_sample = rewards_jit(CORRECT, CONF, FORMAT, config=reward_config("corea_l2", target_mix=0.0))
    brier = rewards_jit(CORRECT, CONF, FORMAT, config=PRESETS["brier"])
    np.testing.assert_allclose(l2_sample["calibration"], brier["calibration"], atol=1e-7)


@pytest.mark.parametrize("mix", [-0.1, 1.5, float("nan")])
def test_target_mix_out_of_range_is_a_one_line_error(mix):
    with pytest.raises(CoreaError, match=r"^reward.target_mix=.*: must be in \[0, 1\]$"):
        RewardPresetConfig(target_mix=mix)
    with pytest.raises(CoreaError, match=r"RewardConfig.target_mix"):
        RewardConfig(target_mix=mix)
    assert RewardPresetConfig(target_mix=0.5).kernel().target_mix == 0.5

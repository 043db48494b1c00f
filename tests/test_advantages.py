"""Group-relative advantages: hand-computed tables for every option, invariants, under jax.jit."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corea_jax.errors import CoreaError
from corea_jax.rl.advantages import AdvantageConfig, group_advantages

advantages_jit = jax.jit(group_advantages, static_argnames="config")

# Three prompts, G = 4. The middle group has one reward for all: zero variance.
REWARDS = np.array([[1, 0, 0, 1], [2, 2, 2, 2], [3, 1, 2, 2]], np.float32)
S3 = math.sqrt(3)

# By hand. Group means 0.5, 2, 2. Centred: [.5 -.5 -.5 .5], 0, [1 -1 0 0].
# Unbiased group stds: sqrt(1/3) and sqrt(2/3); population: 1/2 and sqrt(1/2).
# Batch: mean 1.5, sum of squared deviations 9 over 12 rewards: std sqrt(9/11) or sqrt(3/4).
TABLE = {
    ("mean", "none", 1): [[0.5, -0.5, -0.5, 0.5], [0] * 4, [1, -1, 0, 0]],
    ("rloo", "none", 1): [[2 / 3, -2 / 3, -2 / 3, 2 / 3], [0] * 4, [4 / 3, -4 / 3, 0, 0]],
    ("mean", "group", 1): [
        [S3 / 2, -S3 / 2, -S3 / 2, S3 / 2],
        [0] * 4,
        [1.5**0.5, -(1.5**0.5), 0, 0],
    ],
    ("mean", "group", 0): [[1, -1, -1, 1], [0] * 4, [2**0.5, -(2**0.5), 0, 0]],
    ("rloo", "group", 0): [
        [4 / 3, -4 / 3, -4 / 3, 4 / 3],
        [0] * 4,
        [4 / 3 * 2**0.5, -4 / 3 * 2**0.5, 0, 0],
    ],
    ("mean", "batch", 1): (
        np.array([[0.5, -0.5, -0.5, 0.5], [0] * 4, [1, -1, 0, 0]]) / (9 / 11) ** 0.5
    ),
    ("mean", "batch", 0): (np.array([[0.5, -0.5, -0.5, 0.5], [0] * 4, [1, -1, 0, 0]]) / 0.75**0.5),
}


@pytest.mark.parametrize("baseline, scaling, ddof", sorted(TABLE))
def test_advantage_tables(baseline, scaling, ddof):
    config = AdvantageConfig(baseline=baseline, std_scaling=scaling, ddof=ddof, eps=0.0)
    adv, stats = advantages_jit(REWARDS, config=config)
    np.testing.assert_allclose(adv, np.asarray(TABLE[baseline, scaling, ddof]), atol=1e-6)
    assert adv.shape == (3, 4) and adv.dtype == jnp.float32
    np.testing.assert_array_equal(stats["zero_variance"], [False, True, False])
    assert float(stats["zero_variance_fraction"]) == pytest.approx(1 / 3)
    np.testing.assert_allclose(stats["reward_std"], [0.5, 0.0, 0.5**0.5], atol=1e-6)


def test_default_is_mean_centred_without_std_scaling():
    adv, _ = advantages_jit(REWARDS, config=AdvantageConfig())
    np.testing.assert_allclose(adv, TABLE["mean", "none", 1], atol=1e-6)


@pytest.mark.parametrize("scaling", ["none", "group", "batch"])
@pytest.mark.parametrize("baseline", ["mean", "rloo"])
def test_zero_variance_groups_get_exactly_zero(baseline, scaling):
    rewards = np.array([[0.3] * 8, [1.0] * 8, [0.0] * 8], np.float32)
    adv, stats = advantages_jit(rewards, config=AdvantageConfig(baseline, scaling, eps=0.0))
    assert np.all(np.asarray(adv) == 0.0)
    assert float(stats["zero_variance_fraction"]) == 1.0


@pytest.mark.parametrize("scaling", ["none", "group", "batch"])
@pytest.mark.parametrize("baseline", ["mean", "rloo"])
def test_invariants_on_random_rewards(baseline, scaling):
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=(6, 8)).astype(np.float32)
    config = AdvantageConfig(baseline, scaling)
    adv = np.asarray(advantages_jit(rewards, config=config)[0])
    np.testing.assert_allclose(adv.sum(axis=1), 0.0, atol=1e-5)  # group-relative
    shifted = rewards + rng.normal(size=(6, 1)).astype(np.float32)  # a constant per group
    if scaling != "batch":  # the batch std sees between-group spread
        np.testing.assert_allclose(advantages_jit(shifted, config=config)[0], adv, atol=1e-5)
    scaled = np.asarray(advantages_jit(3.0 * rewards, config=config)[0])
    np.testing.assert_allclose(scaled, adv if scaling != "none" else 3.0 * adv, rtol=1e-4)
    assert np.all(np.sign(adv) == np.sign(rewards - rewards.mean(axis=1, keepdims=True)))


def test_group_scaled_advantages_have_unit_std():
    rng = np.random.default_rng(2)
    rewards = rng.normal(size=(5, 16)).astype(np.float32)
    adv, _ = advantages_jit(rewards, config=AdvantageConfig(std_scaling="group", ddof=0, eps=0.0))
    np.testing.assert_allclose(np.std(np.asarray(adv), axis=1), 1.0, rtol=1e-5)


def test_rloo_is_a_rescaled_mean_baseline():
    rng = np.random.default_rng(3)
    rewards = rng.random((4, 6)).astype(np.float32)
    mean = advantages_jit(rewards, config=AdvantageConfig("mean"))[0]
    rloo = advantages_jit(rewards, config=AdvantageConfig("rloo"))[0]
    np.testing.assert_allclose(rloo, 6 / 5 * np.asarray(mean), atol=1e-6)


def test_single_sample_groups():
    adv, stats = group_advantages(jnp.ones((3, 1)))  # no signal, no error
    assert np.all(np.asarray(adv) == 0) and float(stats["zero_variance_fraction"]) == 1.0
    with pytest.raises(CoreaError, match="G=1"):
        group_advantages(jnp.ones((3, 1)), AdvantageConfig(baseline="rloo"))
    with pytest.raises(CoreaError, match="ddof=1"):
        group_advantages(jnp.ones((3, 1)), AdvantageConfig(std_scaling="group"))


def test_bad_configs_are_user_errors():
    with pytest.raises(CoreaError, match="baseline='median'"):
        AdvantageConfig(baseline="median")
    with pytest.raises(CoreaError, match="std_scaling='token'"):
        AdvantageConfig(std_scaling="token")
    with pytest.raises(CoreaError, match="ddof"):
        AdvantageConfig(ddof=2)


def test_eps_and_zero_variance_tolerance_options():
    rewards = np.array([[1, 0, 0, 1]], np.float32)  # population std 0.5
    config = AdvantageConfig(std_scaling="group", ddof=0, eps=1.0)
    np.testing.assert_allclose(
        advantages_jit(rewards, config=config)[0], [[1 / 3, -1 / 3, -1 / 3, 1 / 3]], atol=1e-6
    )
    nearly_flat = np.array([[1.0, 1.0 + 1e-7, 1.0, 1.0]], np.float32)
    _, stats = advantages_jit(nearly_flat, config=AdvantageConfig())
    assert bool(stats["zero_variance"][0])
    adv, stats = advantages_jit(nearly_flat, config=AdvantageConfig(zero_variance_tol=0.0))
    assert not bool(stats["zero_variance"][0]) and float(jnp.abs(adv).max()) > 0

"""Bootstrap intervals: coverage, width, pairing, seeds, verdicts (corea_jax/scoring/stats.py)."""

import math

import numpy as np
import pytest

from corea_jax.errors import CoreaError
from corea_jax.scoring.stats import (
    Interval,
    bootstrap,
    mean_sd,
    paired_difference,
    seed_question_bootstrap,
    verdict,
)


def test_interval_of_a_mean_has_the_normal_width_and_is_reproducible():
    rng = np.random.default_rng(0)
    correct = rng.random(2000) < 0.6
    ci = bootstrap(np.mean, correct, seed=3)
    se = math.sqrt(0.6 * 0.4 / 2000)
    assert ci.low < ci.point < ci.high
    assert abs((ci.high - ci.low) - 2 * 1.96 * se) < 0.25 * 2 * 1.96 * se
    assert bootstrap(np.mean, correct, seed=3) == ci


def test_95_percent_intervals_cover_the_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    hits = 0
    trials = 200
    for t in range(trials):
        sample = rng.random(300) < 0.3
        ci = bootstrap(np.mean, sample, n_boot=400, seed=t)
        hits += ci.low <= 0.3 <= ci.high
    assert 0.89 <= hits / trials <= 0.99


def test_pairing_cancels_what_two_systems_share():
    """Two systems right on nearly the same questions: the paired interval of the difference
    is far narrower than the two separate intervals suggest."""
    rng = np.random.default_rng(2)
    easy = rng.random(1000) < 0.5
    a = easy.copy()
    b = easy.copy()
    flip = rng.random(1000) < 0.04
    b[flip] = ~b[flip]
    diff = paired_difference(np.mean, (a,), (b,))
    assert diff.point == pytest.approx(a.mean() - b.mean())
    separate = bootstrap(np.mean, a)
    assert (diff.high - diff.low) < 0.5 * (separate.high - separate.low)
    with pytest.raises(ValueError, match="same questions"):
        paired_difference(np.mean, (a,), (b[:10],))


def test_seed_axis_widens_the_interval_when_seeds_disagree():
    rng = np.random.default_rng(3)
    per_seed = np.array([0.4, 0.5, 0.6])[:, None]  # three seeds that really differ
    correct = rng.random((3, 800)) < per_seed  # [S, Q]
    questions_only = bootstrap(np.mean, correct.reshape(-1))
    both = bootstrap(np.mean, correct, over_seeds=True)
    assert both.point == pytest.approx(correct.mean())
    assert (both.high - both.low) > 1.5 * (questions_only.high - questions_only.low)


def test_statistics_of_several_arrays_are_resampled_together():
    conf = np.linspace(0, 1, 500)
    correct = conf > 0.5  # a perfect ranking stays perfect under any resample
    gap = lambda q, c: float(np.mean(q[c]) - np.mean(q[~c]))  # noqa: E731
    ci = bootstrap(gap, conf, correct)
    assert ci.low > 0.4


def test_verdicts_need_the_whole_interval():
    assert verdict(Interval(-0.25, -0.30, -0.21), high=-0.20) == "met"
    assert verdict(Interval(-0.22, -0.30, -0.15), high=-0.20) == "not resolved"
    assert verdict(Interval(0.05, 0.01, 0.09), high=0.0) == "not met"
    assert verdict(Interval(0.5, 0.4, 0.6), low=0.3, high=0.7) == "met"
    assert verdict(Interval(0.5, math.nan, math.nan), low=0.0) == "not resolved"
    assert Interval(0.1234, 0.1, 0.15).format(scale=100, digits=1) == "12.3 [10.0, 15.0]"


def test_calibration_intervals_match_the_metrics_and_resample_questions():
    from corea_jax.scoring import metrics
    from corea_jax.scoring.stats import calibration_intervals

    rng = np.random.default_rng(4)
    conf = rng.random(600).astype(np.float32)
    correct = rng.random(600) < conf  # calibrated by construction
    out = calibration_intervals(correct, conf, n_boot=500)
    assert out["pass@1"].point == pytest.approx(correct.mean())
    assert out["ece"].point == pytest.approx(
        float(metrics.expected_calibration_error(conf, correct))
    )
    assert out["auroc"].point == pytest.approx(float(metrics.auroc(conf, correct)), abs=1e-6)
    for name in ("pass@1", "brier", "auroc"):
        assert out[name].low <= out[name].point <= out[name].high
    assert out["ece"].high > out["ece"].point  # resampling biases ECE upward (module docstring)
    # Three samples per question that always agree: resampling questions (not rows) gives the
    # honest, wider interval of 200 questions rather than of 600 independent rows.
    per_q = rng.random(200) < 0.5
    rows = np.repeat(per_q, 3)
    ids = np.repeat(np.arange(200), 3)
    naive = calibration_intervals(rows, np.full(600, 0.5), n_boot=500)["pass@1"]
    clustered = calibration_intervals(rows, np.full(600, 0.5), clusters=ids, n_boot=500)["pass@1"]
    assert (clustered.high - clustered.low) > 1.4 * (naive.high - naive.low)


# --- seeds and questions, mean +- SD -----------------------------------------------------------


def _ece(q, c):
    from corea_jax.scoring import metrics

    return float(metrics.expected_calibration_error(q, c))


def test_seed_question_bootstrap_with_one_seed_is_the_question_bootstrap():
    rng = np.random.default_rng(5)
    conf = rng.random(300).astype(np.float32)
    correct = rng.random(300) < conf
    one = seed_question_bootstrap(np.mean, [(correct,)], n_boot=400, seed=7)
    assert one == bootstrap(np.mean, correct, n_boot=400, seed=7)
    gap = lambda q, c: float(np.mean(q[c]) - np.mean(q[~c]))  # noqa: E731
    two_arrays = seed_question_bootstrap(gap, [(conf, correct)], n_boot=300, seed=1)
    assert two_arrays == bootstrap(gap, conf, correct, n_boot=300, seed=1)


def test_seeds_that_agree_add_nothing_and_seeds_that_disagree_widen_the_interval():
    rng = np.random.default_rng(6)
    correct = rng.random(800) < 0.5
    same = seed_question_bootstrap(np.mean, [(correct,)] * 3, n_boot=400, seed=2)
    assert same == bootstrap(np.mean, correct, n_boot=400, seed=2)
    per_seed = rng.random((3, 800)) < np.array([0.4, 0.5, 0.6])[:, None]  # [S, Q]
    seeds = seed_question_bootstrap(np.mean, [(row,) for row in per_seed], n_boot=400, seed=2)
    questions_only = bootstrap(np.mean, per_seed.reshape(-1), n_boot=400, seed=2)
    assert seeds.point == pytest.approx(per_seed.mean())
    assert (seeds.high - seeds.low) > 1.5 * (questions_only.high - questions_only.low)


def test_seed_question_bootstrap_of_a_mean_is_the_two_level_bootstrap():
    """For a mean, averaging per-seed values equals pooling the [S, Q] resample, so the two
    helpers agree replicate by replicate (they draw the same question and seed indices)."""
    rng = np.random.default_rng(8)
    per_seed = rng.random((4, 250)) < 0.6
    ours = seed_question_bootstrap(np.mean, [(row,) for row in per_seed], n_boot=300, seed=4)
    pooled = bootstrap(np.mean, per_seed, n_boot=300, seed=4, over_seeds=True)
    for field in ("point", "low", "high"):
        assert getattr(ours, field) == pytest.approx(getattr(pooled, field), abs=1e-12)


def test_seed_question_bootstrap_averages_a_statistic_over_seeds_and_is_deterministic():
    rng = np.random.default_rng(9)
    conf = rng.random((3, 200)).astype(np.float32)
    correct = rng.random((3, 200)) < conf
    arrays = [(conf[s], correct[s]) for s in range(3)]
    a = seed_question_bootstrap(_ece, arrays, n_boot=100, seed=3)
    assert a.point == pytest.approx(np.mean([_ece(*x) for x in arrays]))
    assert a == seed_question_bootstrap(_ece, arrays, n_boot=100, seed=3)
    assert a != seed_question_bootstrap(_ece, arrays, n_boot=100, seed=4)
    with pytest.raises(CoreaError, match="arrays_per_seed"):
        seed_question_bootstrap(_ece, [(conf[0], correct[0]), (conf[1, :50], correct[1, :50])])


def test_mean_sd_is_the_sample_sd():
    assert mean_sd([0.5, 0.6, 0.7]) == pytest.approx((0.6, 0.1))
    mean, sd = mean_sd([0.4])
    assert mean == 0.4 and math.isnan(sd)
    with pytest.raises(CoreaError, match="values"):
        mean_sd([])


# --- questions with k samples: a cluster bootstrap over rows ---------------------------------


def test_k_samples_of_a_question_are_resampled_together():
    rng = np.random.default_rng(10)
    per_q = rng.random(300) < 0.5
    agree = np.repeat(per_q[:, None], 4, axis=1)  # [Q, k]: the k samples always agree
    rows = bootstrap(np.mean, agree, n_boot=400, seed=5)
    assert rows == bootstrap(np.mean, per_q.astype(np.float64), n_boot=400, seed=5)
    flat = bootstrap(np.mean, agree.reshape(-1), n_boot=400, seed=5)
    assert (rows.high - rows.low) > 1.6 * (flat.high - flat.low)
    across = seed_question_bootstrap(np.mean, [(agree,), (agree,)], n_boot=400, seed=5)
    assert across == rows


def test_selective_calibration_intervals_add_keys_and_keep_the_others():
    from corea_jax.scoring import metrics
    from corea_jax.scoring.stats import calibration_intervals

    rng = np.random.default_rng(11)
    conf = np.round(rng.random(400) * 10) / 10  # stated confidences: many ties
    correct = rng.random(400) < conf
    base = calibration_intervals(correct, conf, n_boot=300, seed=2)
    full = calibration_intervals(correct, conf, n_boot=300, seed=2, selective=True)
    assert set(full) == set(base) | {"aurc", "excess_aurc", "equal_mass_ece"}
    for name in base:
        assert full[name] == base[name]
    conf32 = conf.astype(np.float32)
    assert full["aurc"].point == pytest.approx(float(metrics.aurc(conf32, correct)), abs=1e-6)
    assert full["equal_mass_ece"].point == pytest.approx(
        float(metrics.equal_mass_ece(conf32, correct, 15)), abs=1e-6
    )
    for name in ("aurc", "excess_aurc"):
        assert full[name].low <= full[name].point <= full[name].high
    # [Q, k] arrays: the rows are the questions, as with explicit cluster ids
    qk = calibration_intervals(correct.reshape(100, 4), conf.reshape(100, 4), n_boot=300)
    ids = calibration_intervals(correct, conf, clusters=np.repeat(np.arange(100), 4), n_boot=300)
    assert qk == ids

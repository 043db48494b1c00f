"""Metrics: hand-computed values, independent implementations (numpy, scikit-learn), jax.jit."""

import itertools
import json
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from corea_jax.errors import CoreaError
from corea_jax.scoring import metrics

ece_jit = jax.jit(metrics.expected_calibration_error, static_argnames=("n_bins", "binning"))
bins_jit = jax.jit(metrics.reliability_bins, static_argnames=("n_bins", "binning"))
auroc_jit = jax.jit(metrics.auroc)
brier_jit = jax.jit(metrics.brier_score)
pass_k_jit = jax.jit(metrics.pass_at_k, static_argnames="k")
hist_jit = jax.jit(metrics.confidence_histogram, static_argnames="n_bins")


def random_data(seed, n=400, ties=False):
    rng = np.random.default_rng(seed)
    q = rng.random(n).astype(np.float32)
    if ties:
        q = np.round(q * 5) / 5  # six distinct values: many ties
    correct = rng.random(n) < q  # calibrated-ish, so AUROC is well above 0.5
    return q.astype(np.float32), correct


# --- pass@k -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, c, k",
    [(8, 0, 1), (8, 3, 1), (8, 3, 2), (8, 3, 5), (8, 3, 6), (8, 8, 4), (5, 1, 5), (16, 7, 4)],
)
def test_pass_at_k_matches_the_combinatorial_formula(n, c, k):
    correct = np.zeros((1, n), np.float32)
    correct[0, :c] = 1
    expected = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert float(pass_k_jit(correct, k=k)[0]) == pytest.approx(expected, abs=1e-6)


def test_pass_at_1_is_accuracy():
    correct = np.array([[1, 0, 0, 1], [1, 1, 1, 0]], bool)
    np.testing.assert_allclose(pass_k_jit(correct, k=1), [0.5, 0.75])
    assert float(jax.jit(metrics.pass_at_1)(correct)) == pytest.approx(5 / 8)
    with pytest.raises(CoreaError, match="k=5"):
        metrics.pass_at_k(correct, 5)


# --- ECE and reliability bins ---------------------------------------------------------------


def test_ece_by_hand():
    # bins [.1, .2): {.1, .15} conf .125 acc .5 ; [.8, .9): .85 vs 1 ; [.9, 1]: .95 vs 1
    q = np.array([0.1, 0.15, 0.85, 0.95], np.float32)
    c = np.array([0, 1, 1, 1], bool)
    expected = 0.5 * 0.375 + 0.25 * 0.15 + 0.25 * 0.05
    assert float(ece_jit(q, c)) == pytest.approx(expected, abs=1e-6)


def test_equal_mass_ece_by_hand():
    # 5 samples in 2 bins: ranks 0-2, then 3-4 (the larger run first, as numpy.array_split)
    q = np.array([0.9, 0.1, 0.2, 0.6, 0.3], np.float32)
    c = np.array([1, 0, 1, 0, 0], bool)
    # bin 0: {.1, .2, .3} mean .2 acc 1/3 ; bin 1: {.6, .9} mean .75 acc .5
    expected = 3 / 5 * abs(0.2 - 1 / 3) + 2 / 5 * abs(0.75 - 0.5)
    assert float(ece_jit(q, c, n_bins=2, binning="mass")) == pytest.approx(expected, abs=1e-6)


def numpy_ece_width(q, c, n_bins):
    """Independent equal-width ECE: explicit edges, explicit loops."""
    edges = np.linspace(0.0, 1.0, n_bins + 1, dtype=np.float32)
    total = 0.0
    for b in range(n_bins):
        upper_ok = q <= edges[b + 1] if b == n_bins - 1 else q < edges[b + 1]
        inside = (q >= edges[b]) & upper_ok
        if inside.any():
            total += inside.sum() / len(q) * abs(q[inside].mean() - c[inside].mean())
    return total


def numpy_ece_mass(q, c, n_bins):
    order = np.argsort(q, kind="stable")
    return sum(
        len(idx) / len(q) * abs(q[idx].mean() - c[idx].mean())
        for idx in np.array_split(order, n_bins)
        if len(idx)
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_matches_numpy(seed, n_bins):
    q, c = random_data(seed, n=337)
    q[:3] = [0.0, 1.0, 0.5]
    assert float(ece_jit(q, c, n_bins=n_bins)) == pytest.approx(
        numpy_ece_width(q, c, n_bins), abs=1e-5
    )
    assert float(ece_jit(q, c, n_bins=n_bins, binning="mass")) == pytest.approx(
        numpy_ece_mass(q, c, n_bins), abs=1e-5
    )


def test_reliability_bins():
    q, c = random_data(4, n=101)
    out = bins_jit(q, c, n_bins=10)
    assert float(jnp.sum(out["count"])) == 101
    np.testing.assert_allclose(out["lower"], np.linspace(0, 0.9, 10), atol=1e-6)
    filled = np.asarray(out["count"]) > 0
    assert np.all(np.asarray(out["confidence"])[filled] >= np.asarray(out["lower"])[filled])
    mass = bins_jit(q, c, n_bins=10, binning="mass")
    counts = np.asarray(mass["count"])
    assert counts.max() - counts.min() <= 1 and counts.sum() == 101
    assert np.all(np.asarray(mass["lower"]) <= np.asarray(mass["upper"]))
    assert np.all(np.diff(np.asarray(mass["lower"])) >= 0)


def test_empty_bins_are_nan():
    out = bins_jit(np.array([0.05, 0.95], np.float32), np.array([0, 1], bool), n_bins=10)
    assert np.isnan(out["accuracy"][5]) and np.isnan(out["confidence"][5])
    assert float(out["accuracy"][9]) == 1.0 and float(out["count"][0]) == 1.0


# --- AUROC --------------------------------------------------------------------------------


def test_auroc_by_hand_with_a_tie():
    # positives {.9, .8}, negatives {.8, .1}: pairs win, win, tie, win -> 3.5 / 4
    q = np.array([0.9, 0.8, 0.8, 0.1], np.float32)
    c = np.array([1, 1, 0, 0], bool)
    assert float(auroc_jit(q, c)) == pytest.approx(0.875)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_auroc_matches_sklearn(seed, ties):
    q, c = random_data(seed, ties=ties)
    assert float(auroc_jit(q, c)) == pytest.approx(roc_auc_score(c, q), abs=1e-6)


def test_auroc_single_class_is_nan_with_a_reason():
    q = np.array([0.2, 0.9], np.float32)
    assert np.isnan(float(auroc_jit(q, np.array([1, 1], bool))))
    assert metrics.auroc_undefined_reason([1, 1]) == "only one class: every answer is correct"
    assert metrics.auroc_undefined_reason([0, 0]) == "only one class: every answer is wrong"
    assert metrics.auroc_undefined_reason([0, 1], mask=[0, 0]) == "no samples"
    assert metrics.auroc_undefined_reason([0, 1]) is None


# --- masks, Brier, histogram ----------------------------------------------------------------


def test_masked_samples_count_as_absent():
    q, c = random_data(7, n=120)
    mask = np.random.default_rng(7).random(120) < 0.6
    for fn in (
        partial(metrics.expected_calibration_error, n_bins=10),
        partial(metrics.expected_calibration_error, n_bins=7, binning="mass"),
        metrics.brier_score,
        metrics.auroc,
    ):
        jitted = jax.jit(fn)
        got = float(jitted(q, c, mask=mask))
        assert got == pytest.approx(float(jitted(q[mask], c[mask])), abs=1e-6)
    assert float(metrics.pass_at_1(c, mask)) == pytest.approx(float(np.mean(c[mask])), abs=1e-6)


def test_brier_by_hand():
    q = np.array([0.9, 0.2, 0.5], np.float32)
    c = np.array([1, 1, 0], bool)
    assert float(brier_jit(q, c)) == pytest.approx((0.01 + 0.64 + 0.25) / 3)


def test_confidence_histogram():
    q = np.array([0.0, 0.05, 0.1, 0.55, 0.99, 1.0], np.float32)
    np.testing.assert_array_equal(hist_jit(q, n_bins=10), [2, 1, 0, 0, 0, 1, 0, 0, 0, 2])
    np.testing.assert_array_equal(hist_jit(q, n_bins=2), [3, 3])


# --- summary ------------------------------------------------------------------------------


def test_calibration_summary_is_json_ready():
    q, c = random_data(9, n=50)
    valid = np.ones(50, bool)
    valid[:5] = False
    summary = metrics.calibration_summary(c, q, valid, format_ok=valid)
    json.dumps(summary, allow_nan=False)
    assert summary["n"] == 50 and summary["n_calibration"] == 50
    assert summary["format_rate"] == pytest.approx(0.9)
    assert summary["auroc_reason"] is None and 0 <= summary["ece"] <= 1
    assert sum(summary["confidence_histogram"]["counts"]) == 50
    # invalid confidences count as 0 by default; None leaves them out
    q0 = np.where(valid, q, 0.0)
    assert summary["brier"] == pytest.approx(float(brier_jit(q0, c)), abs=1e-6)
    left_out = metrics.calibration_summary(c, q, valid, invalid_confidence=None)
    assert left_out["n_calibration"] == 45
    assert left_out["brier"] == pytest.approx(float(brier_jit(q[5:], c[5:])), abs=1e-6)


def test_summary_reports_single_class():
    summary = metrics.calibration_summary(np.ones(4, bool), np.full(4, 0.7))
    assert summary["auroc"] is None
    assert summary["auroc_reason"] == "only one class: every answer is correct"
    json.dumps(summary, allow_nan=False)


def test_bad_options_are_user_errors():
    with pytest.raises(CoreaError, match="binning='quantile'"):
        metrics.expected_calibration_error(np.ones(3), np.ones(3), binning="quantile")
    with pytest.raises(CoreaError, match="n_bins=0"):
        metrics.expected_calibration_error(np.ones(3), np.ones(3), n_bins=0)


def test_a_stated_decimal_on_a_bin_edge_lands_in_the_bin_it_opens():
    """0.9 belongs to [0.9, 1.0] (float32 linspace put its edge at 0.90000004), for every edge."""
    for n_bins in (5, 10, 20):
        stated = np.array([k / n_bins for k in range(n_bins)] + [1.0])
        idx = np.asarray(metrics.equal_width_bins(jnp.asarray(stated, jnp.float32),
                                                  jnp.ones(len(stated), bool), n_bins))  # fmt: skip
        np.testing.assert_array_equal(idx, list(range(n_bins)) + [n_bins - 1])


# --- mean@k ---------------------------------------------------------------------------------


def test_mean_at_k_by_hand():
    correct = np.array([[1, 0, 1, 1], [0, 0, 0, 1]], bool)  # per question .75, .25
    assert float(jax.jit(metrics.mean_at_k)(correct)) == pytest.approx(0.5)
    with pytest.raises(CoreaError, match=r"\[Q, k\]"):
        metrics.mean_at_k(np.ones(4))


# --- equal-mass ECE with ties kept together -------------------------------------------------

mass_ece_jit = jax.jit(metrics.equal_mass_ece, static_argnames="n_bins")


def test_equal_mass_ece_keeps_a_tie_in_one_bin_by_hand():
    # 6 samples, 3 bins of 2 by rank; the tie .2 holds ranks 0-2, middle rank 1 -> bin 0 whole
    q = np.array([0.2, 0.2, 0.2, 0.5, 0.7, 0.9], np.float32)
    c = np.array([1, 0, 0, 1, 0, 1], bool)
    # bin 0: {.2 x3} acc 1/3 ; bin 1: {.5} acc 1 ; bin 2: {.7, .9} mean .8 acc .5
    expected = 3 / 6 * abs(0.2 - 1 / 3) + 1 / 6 * 0.5 + 2 / 6 * 0.3
    assert float(mass_ece_jit(q, c, n_bins=3)) == pytest.approx(expected, abs=1e-6)
    tied = bins_jit(q, c, n_bins=3, binning="mass_tied")
    np.testing.assert_array_equal(tied["count"], [3, 1, 2])
    split = bins_jit(q, c, n_bins=3, binning="mass")  # the untied rule cuts the tie
    np.testing.assert_array_equal(split["count"], [2, 2, 2])


@pytest.mark.parametrize("seed", range(3))
def test_equal_mass_ece_never_splits_a_tie_and_bins_follow_confidence(seed):
    q, c = random_data(seed, n=203, ties=True)
    idx = np.asarray(metrics.equal_mass_tied_bins(jnp.asarray(q), jnp.ones(203, bool), 15))
    for value in np.unique(q):
        assert len(set(idx[q == value].tolist())) == 1
    order = np.argsort(q, kind="stable")
    assert np.all(np.diff(idx[order]) >= 0)


@pytest.mark.parametrize("seed", range(3))
def test_equal_mass_ece_without_ties_is_the_rank_binning(seed):
    q, c = random_data(seed, n=337)
    assert len(np.unique(q)) == q.size
    assert float(mass_ece_jit(q, c, n_bins=15)) == pytest.approx(numpy_ece_mass(q, c, 15), abs=1e-5)


def test_equal_mass_ece_equals_equal_width_ece_when_width_bins_hold_equal_mass():
    # 5 equal-width bins with 6 samples each, ties inside bins (never across an edge)
    rng = np.random.default_rng(5)
    q = np.repeat(np.array([0.05, 0.1, 0.3, 0.35, 0.5, 0.55, 0.65, 0.7, 0.85, 0.95]), 3)
    q = q.astype(np.float32)
    c = rng.random(30) < 0.5
    perm = rng.permutation(30)
    q, c = q[perm], c[perm]
    assert float(mass_ece_jit(q, c, n_bins=5)) == pytest.approx(
        float(ece_jit(q, c, n_bins=5)), abs=1e-6
    )


def test_equal_mass_ece_masked_samples_count_as_absent():
    q, c = random_data(8, n=150, ties=True)
    mask = np.random.default_rng(8).random(150) < 0.7
    got = float(mass_ece_jit(q, c, n_bins=7, mask=mask))
    assert got == pytest.approx(float(mass_ece_jit(q[mask], c[mask], n_bins=7)), abs=1e-6)


# --- risk-coverage and AURC -----------------------------------------------------------------

aurc_jit = jax.jit(metrics.aurc)
excess_jit = jax.jit(metrics.excess_aurc)


def test_risk_coverage_and_aurc_by_hand_with_a_tie():
    # most confident first: .9 right | tie .8 {wrong, right} | .3 wrong
    q = np.array([0.9, 0.8, 0.8, 0.3], np.float32)
    c = np.array([1, 0, 1, 0], bool)
    coverage, risk = metrics.risk_coverage(q, c)
    np.testing.assert_allclose(coverage, [0.25, 0.75, 1.0])  # the tie is one point
    np.testing.assert_allclose(risk, [0.0, 1 / 3, 0.5])
    # k = 1..4 answered; inside the tie the 2nd admitted carries half an error: 0.5 / 2
    expected = (0 + 0.5 / 2 + 1 / 3 + 2 / 4) / 4
    assert float(aurc_jit(q, c)) == pytest.approx(expected, abs=1e-6)
    oracle = (1 / 3 + 2 / 4) / 4  # r = 2 of n = 4 right: risks 0, 0, 1/3, 2/4
    assert float(metrics.oracle_aurc(c)) == pytest.approx(oracle, abs=1e-6)
    assert float(excess_jit(q, c)) == pytest.approx(expected - oracle, abs=1e-6)


def test_aurc_all_right_all_wrong_and_a_perfect_ranking():
    q = np.array([0.9, 0.5, 0.5, 0.2], np.float32)
    right, wrong = np.ones(4, bool), np.zeros(4, bool)
    assert float(aurc_jit(q, right)) == 0.0 and float(excess_jit(q, right)) == 0.0
    assert float(aurc_jit(q, wrong)) == pytest.approx(1.0) and float(excess_jit(q, wrong)) == 0.0
    np.testing.assert_allclose(metrics.risk_coverage(q, wrong)[1], [1.0, 1.0, 1.0])
    perfect = np.array([1, 1, 1, 0], bool)
    assert float(excess_jit(q, perfect)) == pytest.approx(0.0, abs=1e-7)
    # the worst ranking: risks 1, 1, 1, 3/4 against the oracle's 0, 1/2, 2/3, 3/4
    worst = (3 + 3 / 4) / 4 - (1 / 2 + 2 / 3 + 3 / 4) / 4
    assert float(excess_jit(q, ~perfect)) == pytest.approx(worst, abs=1e-6)


def aurc_over_orders(q, c):
    """Independent AURC: the mean over every order that sorts q descending (ties in all
    orders) of the mean risk over k = 1..N."""
    values = []
    for perm in itertools.permutations(range(len(q))):
        if np.all(np.diff(q[list(perm)]) <= 0):
            wrong = ~c[list(perm)]
            values.append(np.mean(np.cumsum(wrong) / np.arange(1, len(q) + 1)))
    return np.mean(values)


@pytest.mark.parametrize("seed", range(6))
def test_aurc_is_the_average_over_orders_of_tied_samples(seed):
    rng = np.random.default_rng(seed)
    q = (rng.integers(0, 3, 7) / 4).astype(np.float32)  # 7 samples on 3 values: big ties
    c = rng.random(7) < 0.5
    assert float(aurc_jit(q, c)) == pytest.approx(aurc_over_orders(q, c), abs=1e-6)


def test_aurc_masks_and_excess_is_never_negative():
    q, c = random_data(11, n=300, ties=True)
    mask = np.random.default_rng(11).random(300) < 0.5
    assert float(aurc_jit(q, c, mask)) == pytest.approx(float(aurc_jit(q[mask], c[mask])), abs=1e-6)
    cov, risk = metrics.risk_coverage(q, c, mask)
    assert cov[-1] == 1.0 and risk[-1] == pytest.approx(1 - c[mask].mean())
    assert len(cov) == len(np.unique(q[mask]))
    for seed in range(5):
        q, c = random_data(seed, n=97, ties=bool(seed % 2))
        assert float(excess_jit(q, c)) >= -1e-6


def test_nan_confidence_is_not_silently_ranked():
    q = np.array([0.9, np.nan, 0.3], np.float32)
    c = np.array([1, 0, 0], bool)
    assert np.isnan(float(aurc_jit(q, c)))
    assert float(aurc_jit(q, c, np.array([1, 0, 1], bool))) == pytest.approx(0.25)
    with pytest.raises(CoreaError, match="confidence"):
        metrics.risk_coverage(q, c)


# --- per-group calibration, within-group AUROC ---------------------------------------------


def test_a_confidence_that_only_knows_the_level_has_within_group_auroc_one_half():
    # three levels with accuracy .9, .5, .2; everyone states their level's accuracy
    correct = np.array([1] * 9 + [0] + [1] * 5 + [0] * 5 + [1] * 2 + [0] * 8, bool)
    level = np.repeat([1, 2, 3], 10)
    conf = np.repeat([0.9, 0.5, 0.2], 10).astype(np.float32)
    out = metrics.per_group_calibration(conf, correct, level)
    assert out["within_group_auroc"] == pytest.approx(0.5)
    assert out["within_group_pairs"] == 9 * 1 + 5 * 5 + 2 * 8
    assert out["auroc"] == pytest.approx(roc_auc_score(correct, conf), abs=1e-6)
    assert out["auroc"] > 0.75
    for label, acc in zip((1, 2, 3), (0.9, 0.5, 0.2), strict=True):
        group = out["groups"][label]
        assert group["n"] == 10 and group["accuracy"] == pytest.approx(acc)
        assert group["ece"] == pytest.approx(0.0, abs=1e-6)
        assert group["auroc"] == pytest.approx(0.5)


def test_per_group_calibration_by_hand():
    q = np.array([0.2, 0.2, 0.2, 0.5, 0.7, 0.9], np.float32)
    c = np.array([1, 0, 0, 1, 0, 1], bool)
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    out = metrics.per_group_calibration(q, c, groups)
    json.dumps(out, allow_nan=False)
    # same-group pairs: a .2 vs .2 tie ; b .5 beats .2 ; c .9 beats .7 -> 2.5 / 3
    assert out["within_group_auroc"] == pytest.approx(2.5 / 3, abs=1e-6)
    # all pairs: .2 ties two .2s, loses to .7 ; .5 beats two, loses one ; .9 beats three
    assert out["auroc"] == pytest.approx(6 / 9, abs=1e-6)
    b = out["groups"]["b"]
    assert b["mean_confidence"] == pytest.approx(0.35) and b["accuracy"] == 0.5
    assert b["ece"] == pytest.approx(0.5 * 0.2 + 0.5 * 0.5)  # .2 wrong, .5 right: own bins
    assert list(out["groups"]) == ["a", "b", "c"]


def test_a_group_with_one_class_has_no_auroc_and_adds_no_pairs():
    q = np.array([0.9, 0.8, 0.6, 0.4], np.float32)
    c = np.array([1, 1, 1, 0], bool)
    out = metrics.per_group_calibration(q, c, [2, 2, 1, 1], n_bins=5)
    assert out["groups"][2]["auroc"] is None
    assert out["groups"][2]["auroc_reason"] == "only one class: every answer is correct"
    assert out["within_group_pairs"] == 1 and out["within_group_auroc"] == 1.0
    alone = metrics.per_group_calibration(q, c, [0, 1, 2, 3])
    assert alone["within_group_auroc"] is None and alone["within_group_pairs"] == 0
    with pytest.raises(CoreaError, match="groups"):
        metrics.per_group_calibration(q, c, [1, 2])
    pairs = metrics.per_group_calibration(q, c, [("a", 1), ("a", 1), ("b", 2), ("b", 2)])
    assert list(pairs["groups"]) == [("a", 1), ("b", 2)]


@pytest.mark.parametrize("seed", range(3))
def test_within_group_auroc_is_the_pair_weighted_mean_of_group_aurocs(seed):
    q, c = random_data(seed, n=240, ties=True)
    g = np.random.default_rng(seed).integers(0, 4, 240)
    wins = pairs = 0.0
    for k in range(4):
        sel = g == k
        n_pairs = c[sel].sum() * (~c[sel]).sum()
        wins += roc_auc_score(c[sel], q[sel]) * n_pairs
        pairs += n_pairs
    got = float(jax.jit(metrics.within_group_auroc)(q, c, g))
    assert got == pytest.approx(wins / pairs, abs=1e-6)
    one_group = float(metrics.within_group_auroc(q, c, np.zeros(240, int)))
    assert one_group == pytest.approx(roc_auc_score(c, q), abs=1e-6)


def test_per_group_invalid_confidences_follow_calibration_summary():
    q = np.array([0.9, 0.8, 0.7, 0.1], np.float32)
    c = np.array([1, 0, 1, 0], bool)
    valid = np.array([1, 1, 0, 1], bool)
    as_zero = metrics.per_group_calibration(q, c, [0, 0, 0, 0], confidence_valid=valid)
    assert as_zero["groups"][0]["mean_confidence"] == pytest.approx((0.9 + 0.8 + 0.1) / 4)
    left_out = metrics.per_group_calibration(
        q, c, [0, 0, 0, 0], confidence_valid=valid, invalid_confidence=None
    )
    assert left_out["groups"][0]["n"] == 4 and left_out["groups"][0]["n_calibration"] == 3
    assert left_out["groups"][0]["mean_confidence"] == pytest.approx(0.6)

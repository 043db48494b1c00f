"""Metrics: hand-computed values, independent implementations (numpy, scikit-learn), jax.jit."""

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

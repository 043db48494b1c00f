"""The demo's experiment tables and claims, on constructed cascade rows with two seeds:
claims follow whole intervals over questions and seeds; seed figures are the per-seed values;
the simulated LLM's known accuracy, not its draw, sets tau and the LLM-only comparator."""

import math

import numpy as np
import pytest

from corea_jax.demo import claims, strengths
from corea_jax.demo.claims import claim_lines
from corea_jax.demo.tables import (
    SLMResult,
    expected_view,
    headline_rows,
    level_lookup,
    level_rows,
    seed_arrays,
    system_specs,
)
from corea_jax.scoring.stats import Interval

N, SEEDS, P_LLM = 2000, (0, 1), 0.8


def _result(confidence, correct, levels, llm_correct):
    rows = tuple(
        {"dataset": "synthetic", "id": f"q{i}", "sample": 0,
         "split": "calibration" if i % 4 == 0 else "test",
         "confidence": float(confidence[i]), "avgprob": 0.5, "slm_correct": bool(correct[i]),
         "llm_correct": bool(llm_correct[i]), "slm_cost": 0.1, "slm_prefill_cost": 0.01,
         "llm_cost": 1.0, "llm_p_correct": P_LLM, "level": levels[i]}
        for i in range(N)
    )  # fmt: skip
    return SLMResult(rows, {"invalid_confidence": 0.0, "fitted_signals": {}})


@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(0)
    truth = rng.random(N)  # each question's chance of being answered right
    levels = np.where(truth > 0.5, "hard", "easy")
    llm = np.ones(N, bool)  # a lucky draw: right on everything, against an expected 0.8
    out = {"warm": _result(np.full(N, 0.9), rng.random(N) < truth, levels, llm)}
    for seed in SEEDS:
        correct = rng.random(N) < truth
        out[f"corea-s{seed}"] = _result(truth, correct, levels, llm)  # states its real chance
        out[f"brier-s{seed}"] = _result(truth, correct, levels, llm)
        out[f"rlvr-s{seed}"] = _result(np.full(N, 0.95), correct, levels, llm)  # same answers
    return out


SPECS = [s for s in system_specs(("rlvr", "brier", "corea"), SEEDS)
         if s["signal"] in ("verbalized", "avgprob", "level")]  # fmt: skip


def test_headline_rows_aggregate_the_seeds_with_the_expected_llm(results):
    view = expected_view(results)
    assert view.expected and view.p[("synthetic", "q3")] == P_LLM
    rows = headline_rows(results, SPECS, "synthetic", view, n_boot=200)
    by = {r["system"]: r for r in rows}
    assert list(by)[:2] == ["SLM-Verb", "SLM-AvgProb"] and by["SLM-Verb"]["seeds"] == [0]
    corea = by["COREA"]
    assert corea["seeds"] == list(SEEDS) and corea["n_test"] == N * 3 // 4
    assert corea["taus"] == [pytest.approx(P_LLM)] * 2  # expected, not the draw's 1.0
    assert corea["taus_sampled"] == [1.0, 1.0] and corea["llm_pass"] == pytest.approx(P_LLM)
    per_seed = [seed_arrays(results[s["slm"]], s, "synthetic", view)
                for s in SPECS if s["system"] == "COREA"]  # fmt: skip
    cascade = [np.where(a["conf"] < P_LLM, P_LLM, a["slm_correct"]).mean() for a in per_seed]
    stat = corea["stats"]["cascade_pass"]
    assert stat["per_seed"] == pytest.approx(cascade)
    assert stat["mean"] == pytest.approx(np.mean(cascade))
    assert stat["sd"] == pytest.approx(np.std(cascade, ddof=1))
    iv = stat["interval"]
    assert iv["low"] < stat["mean"] < iv["high"]
    # The draw's figures beside them: tau 1.0 defers everything below 1 to a perfect LLM.
    sampled = [np.where(a["conf"] < 1.0, 1.0, a["slm_correct"]).mean() for a in per_seed]
    assert corea["stats"]["cascade_pass_sampled"]["per_seed"] == pytest.approx(sampled)
    assert corea["distinct_values"][0] > 1000 and by["RLVR-SLM-Verb"]["distinct_values"] == [1, 1]


def test_the_level_lookup_states_each_levels_calibration_accuracy(results):
    levels = np.array(["a", "a", "b", "b", "c"])
    correct = np.array([1, 0, 1, 1, 0], bool)
    calibration = np.array([True, True, True, False, False])
    # a: 1/2; b: 1/1 (its calibration row only); c: none, so the calibration split's 2/3.
    np.testing.assert_allclose(level_lookup(levels, correct, calibration),
                               [0.5, 0.5, 1.0, 1.0, 2 / 3])  # fmt: skip
    rows = headline_rows(results, SPECS, "synthetic", expected_view(results), n_boot=100)
    lookup = next(r for r in rows if r["system"] == "RLVR-SLM-Level lookup")
    # Knows the level only: ranks across levels, ties within one.
    assert lookup["stats"]["auroc"]["mean"] > 0.65
    assert lookup["stats"]["within_level_auroc"]["mean"] == pytest.approx(0.5)
    assert lookup["distinct_values"] == [2, 2]


def test_claims_follow_the_intervals(results):
    view = expected_view(results)
    rows = headline_rows(results, SPECS, "synthetic", view, n_boot=200)
    lines = claim_lines(results, SPECS, "synthetic", rows, view, n_boot=200)
    by = {line.split(":")[0]: line for line in lines}
    assert by["- ECE(COREA) - ECE(RLVR-SLM-Verb)"].endswith("**met**")
    # Identical policies: the interval is [0, 0], under the +0.01 margin.
    assert by["- ECE(COREA) - ECE(Brier-SLM-Verb)"].endswith("**met**")
    assert by["- SLM pass@1, COREA - RLVR-SLM-Verb"].endswith("**met**")  # the same answers
    # RLVR states 0.95 >= tau: it never defers: -90% cost, but far below the LLM's 0.8.
    rlvr = next(line for line in lines if line.startswith("- RLVR-SLM-Verb cascade"))
    assert "-90.0 [-90.0, -90.0]%" in rlvr and rlvr.endswith("jointly: **not met**")
    corea = next(line for line in lines if line.startswith("- COREA cascade"))
    assert "jointly: **" in corea
    assert any(line.startswith("- COREA: AUROC") for line in lines)


@pytest.mark.parametrize(
    "low, high, expected",
    [(-0.03, 0.0099, "met"), (-0.03, 0.01, "not resolved"), (0.0, 0.02, "not resolved"),
     (0.0001, 0.02, "not met"), (-0.035, 0.011, "not resolved"), (math.nan, 0.0, "not resolved")],
)  # fmt: skip
def test_non_inferiority_needs_the_upper_end_under_the_margin(low, high, expected):
    assert claims.non_inferior(Interval(0.0, low, high)) == expected


@pytest.mark.parametrize(
    "low, high, expected",
    [(-0.02, -0.001, "met"), (-0.02, 0.0, "not resolved"), (-0.01, 0.01, "not resolved"),
     (0.001, 0.02, "not met")],
)  # fmt: skip
def test_below_zero_is_strict(low, high, expected):
    assert claims.below(Interval(0.0, low, high)) == expected


def _stats(cost, gap):
    return {"cost_vs_llm": {"interval": Interval(0.0, *cost).to_dict()},
            "pass_vs_llm": {"interval": Interval(0.0, *gap).to_dict()}}  # fmt: skip


@pytest.mark.parametrize(
    "cost, gap, expected",
    [((-0.5, -0.2), (-0.02, 0.01), "met"),  # both boundaries inside
     ((-0.5, -0.19), (-0.01, 0.01), "not resolved"),  # cost straddles -20%
     ((-0.5, -0.3), (-0.021, 0.0), "not resolved"),  # pass@1 straddles -2 points
     ((-0.5, -0.3), (-0.3, -0.21), "not met"),  # cheap, but 20 points lost: not the claim
     ((-0.1, -0.05), (0.0, 0.01), "not met")],  # accurate, but not cheaper enough
)  # fmt: skip
def test_the_cascade_claim_is_joint_at_one_tau(cost, gap, expected):
    line = claims.cascade_claim("X", _stats(cost, gap))
    assert line.endswith(f"jointly: **{expected}**")


def test_level_rows_separate_level_from_question(results):
    specs = [s for s in SPECS if s["system"] in ("COREA", "RLVR-SLM-Verb", "RLVR-SLM-Level lookup")]
    rows = {r["system"]: r for r in level_rows(results, specs, "synthetic")}
    # COREA's confidence is each question's own chance: it ranks within a level too.
    assert rows["COREA"]["within_level_auroc"] > 0.6
    assert rows["RLVR-SLM-Verb"]["within_level_auroc"] == pytest.approx(0.5)
    assert rows["RLVR-SLM-Level lookup"]["within_level_auroc"] == pytest.approx(0.5)
    assert set(rows["COREA"]["levels"]) == {"easy", "hard"}
    easy = rows["RLVR-SLM-Level lookup"]["levels"]["easy"]
    assert easy["mean_confidence"] == pytest.approx(easy["accuracy"], abs=0.05)


def test_a_nearer_llm_is_solved_on_the_calibration_split():
    work = np.array([1, 5, 10, 20], float)
    decay = strengths.solve_decay(work, 0.99, 0.6)
    assert np.mean(0.99 * np.exp(-decay * work)) == pytest.approx(0.6, abs=1e-9)
    assert strengths.solve_decay(work, 0.99, 0.995) is None  # above the ceiling
    assert strengths.solve_decay(work, 0.99, 0.99) == pytest.approx(0.0, abs=1e-9)

"""Deferral, the threshold sweep, baselines, tau rules and AvgProb on hand-computed tables."""

import dataclasses
import itertools
import math

import jax
import numpy as np
import pytest

from corea_jax.cascade.sweep import (
    CascadeData,
    calibration_mask,
    defer_mask,
    evaluate_tau,
    mean_token_probability,
    report_on_test,
    select_tau,
    sweep_taus,
    sweep_thresholds,
)
from corea_jax.errors import CoreaError

NAN = float("nan")


def table() -> CascadeData:
    """Five questions; q2's confidence is invalid. SLM costs 1 per question, the LLM 10.

    effective confidence (invalid -> 0): 0.9 0.3 0.0 0.6 0.3
    slm_correct:                          1   0   0   1   1    (SLM only: 0.6)
    llm_correct:                          1   1   1   0   1    (LLM only: 0.8)
    """
    return CascadeData(
        confidence=np.array([0.9, 0.3, NAN, 0.6, 0.3]),
        slm_correct=np.array([1, 0, 0, 1, 1], bool),
        llm_correct=np.array([1, 1, 1, 0, 1], bool),
        slm_cost=np.ones(5),
        llm_cost=np.full(5, 10.0),
    )


# tau: (pass@1, avg cost, LLM%), worked out by hand from `table()`.
HAND = {
    0.0: (0.6, 1.0, 0.0),  # nothing deferred
    0.3: (0.8, 3.0, 0.2),  # q2 (invalid = 0) deferred: the LLM fixes it
    0.5: (1.0, 7.0, 0.6),  # q1, q2, q4: the LLM fixes q1, keeps q4
    0.7: (0.8, 9.0, 0.8),  # + q3, which the LLM gets wrong
    0.95: (0.8, 11.0, 1.0),  # everything: LLM accuracy at SLM + LLM cost
}


def test_defer_mask_is_confidence_below_tau_with_invalid_as_zero():
    conf = np.array([0.9, 0.3, NAN, 0.6, 0.3])
    assert defer_mask(conf, 0.3).tolist() == [False, False, True, False, False]
    assert defer_mask(conf, 0.0).tolist() == [False] * 5  # 0 < 0 is false
    assert defer_mask(conf, 0.0, invalid_confidence=-math.inf).tolist()[2]
    assert not defer_mask(conf, 1.0, invalid_confidence=math.inf)[2]
    assert defer_mask(conf, np.array([[0.5], [1.0]])).sum(axis=1).tolist() == [3, 5]


@pytest.mark.parametrize("tau", sorted(HAND))
def test_evaluate_tau_matches_the_hand_table(tau):
    point = evaluate_tau(table(), tau)
    assert (point.pass_at_1, point.avg_cost, point.llm_fraction) == pytest.approx(HAND[tau])


def test_sweep_matches_the_hand_table_and_baselines():
    sweep = sweep_thresholds(table())
    for tau, expected in HAND.items():
        k = int(np.argmin(np.abs(sweep.tau - tau)))
        assert sweep.tau[k] == pytest.approx(tau)
        got = (sweep.pass_at_1[k], sweep.avg_cost[k], sweep.llm_fraction[k])
        assert got == pytest.approx(expected)
    assert (sweep.slm_only.pass_at_1, sweep.slm_only.avg_cost) == pytest.approx((0.6, 1.0))
    assert (sweep.llm_only.pass_at_1, sweep.llm_only.avg_cost) == pytest.approx((0.8, 10.0))
    # Oracle: defer q1 and q2 (SLM wrong, LLM right): 100% at 1 + 2 * 10 / 5.
    oracle = sweep.oracle
    assert (oracle.pass_at_1, oracle.avg_cost, oracle.llm_fraction) == pytest.approx((1, 5, 0.4))
    # Random deferral of 20%: 0.8 * 0.6 + 0.2 * 0.8 and 1 + 0.2 * 10.
    k = int(np.argmin(np.abs(sweep.tau - 0.3)))
    assert (sweep.random_pass_at_1[k], sweep.random_avg_cost[k]) == pytest.approx((0.64, 3.0))
    # Oracle at 20% LLM: one of q1/q2.
    assert (sweep.oracle_pass_at_1[k], sweep.oracle_avg_cost[k]) == pytest.approx((0.8, 3.0))


def test_sweep_taus_hold_the_grid_every_confidence_and_one_past_the_largest():
    conf = np.array([0.25, 0.333, NAN, 0.9])
    taus = sweep_taus(conf, grid=[0.0, 0.5, 1.0])
    assert taus.tolist() == [0.0, 0.25, 0.333, 0.5, 0.9, np.nextafter(0.9, 1), 1.0]
    sweep = sweep_thresholds(table(), grid=[0.5])
    assert sweep.llm_fraction[-1] == 1.0  # the last tau defers everything


def test_invalid_confidence_option_changes_deferral():
    kept = sweep_thresholds(table(), grid=[0.5], invalid_confidence=math.inf)
    k = int(np.flatnonzero(kept.tau == 0.5)[0])
    # q1, q4 deferred; q2 kept with the SLM's wrong answer.
    assert (kept.pass_at_1[k], kept.llm_fraction[k]) == pytest.approx((0.8, 0.4))
    always = evaluate_tau(table(), 0.0, invalid_confidence=-math.inf)
    assert (always.pass_at_1, always.llm_fraction) == pytest.approx((0.8, 0.2))


def random_data(seed: int, q: int = 200) -> CascadeData:
    rng = np.random.default_rng(seed)
    conf = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9, NAN], size=q)
    return CascadeData(
        confidence=conf,
        slm_correct=rng.random(q) < np.nan_to_num(conf, nan=0.2),
        llm_correct=rng.random(q) < 0.75,
        slm_cost=rng.uniform(0.1, 0.3, q),
        llm_cost=rng.uniform(1.0, 3.0, q),
    )


@pytest.mark.parametrize("invalid", [0.0, -math.inf, math.inf])
def test_sweep_equals_direct_evaluation_at_every_tau(invalid):
    data = random_data(0)
    sweep = sweep_thresholds(data, invalid_confidence=invalid)
    for k, tau in enumerate(sweep.tau):
        point = evaluate_tau(data, tau, invalid)
        assert sweep.pass_at_1[k] == pytest.approx(point.pass_at_1)
        assert sweep.avg_cost[k] == pytest.approx(point.avg_cost)
        assert sweep.llm_fraction[k] == pytest.approx(point.llm_fraction)


@pytest.mark.parametrize("invalid", [0.0, math.inf])
def test_router_sweep_charges_the_prefill_only_on_routed_away_questions(invalid):
    """A router decides before generating: a deferred question costs its prefill + the LLM."""
    base = random_data(1)
    prefill = base.slm_cost * 0.1
    data = dataclasses.replace(base, slm_cost_deferred=prefill)
    sweep = sweep_thresholds(data, invalid_confidence=invalid)
    for k, tau in enumerate(sweep.tau):
        defer = defer_mask(data.confidence, tau, invalid)
        by_hand = np.where(defer, prefill + data.llm_cost, data.slm_cost).mean()
        assert sweep.avg_cost[k] == pytest.approx(by_hand)
        assert evaluate_tau(data, tau, invalid).avg_cost == pytest.approx(by_hand)
    # Deferring everything costs prefill + LLM, cheaper than the post-generation cascade's
    # SLM + LLM; keeping everything costs the same; LLM-only is the LLM alone either way.
    plain = sweep_thresholds(base, invalid_confidence=invalid)
    if invalid == 0.0:  # the last tau defers every question
        assert sweep.avg_cost[-1] == pytest.approx((prefill + data.llm_cost).mean())
    assert sweep.avg_cost[-1] < plain.avg_cost[-1]
    assert sweep.avg_cost[0] == pytest.approx(plain.avg_cost[0])
    assert sweep.llm_only.avg_cost == plain.llm_only.avg_cost


def test_random_baseline_is_the_exact_mean_over_all_subsets_and_oracle_is_the_best():
    data = table()
    sweep = sweep_thresholds(data, taus=[0.3, 0.5, 0.7])
    for k, n in enumerate([1, 3, 4]):
        passes, costs = [], []
        for subset in itertools.combinations(range(5), n):
            defer = np.isin(np.arange(5), subset)
            passes.append(np.where(defer, data.llm_correct, data.slm_correct).mean())
            costs.append((data.slm_cost + defer * data.llm_cost).mean())
        assert sweep.random_pass_at_1[k] == pytest.approx(np.mean(passes))
        assert sweep.random_avg_cost[k] == pytest.approx(np.mean(costs))
        assert sweep.oracle_pass_at_1[k] == pytest.approx(max(passes))


def test_tau_rules_on_the_hand_table():
    cal = table()
    paper = select_tau("llm_pass", cal)
    assert paper.tau == pytest.approx(0.8)  # the LLM's pass@1 on the calibration split
    assert (paper.calibration.pass_at_1, paper.calibration.avg_cost) == pytest.approx((0.8, 9.0))

    within = select_tau("within_llm", cal, max_drop_points=0.0)
    # pass@1 >= 80% at least cost: defer only q2, cost 3; the smallest such tau on the grid.
    assert within.tau == pytest.approx(0.01) and within.feasible
    assert within.calibration.avg_cost == pytest.approx(3.0)
    loose = select_tau("within_llm", cal, max_drop_points=20.0)
    assert loose.tau == 0.0 and loose.calibration.avg_cost == pytest.approx(1.0)

    budget = select_tau("budget", cal, budget=5.0)
    assert budget.tau == pytest.approx(0.01) and budget.calibration.pass_at_1 == pytest.approx(0.8)
    relative = select_tau("budget", cal, budget=0.7, relative=True)  # 0.7 x 10 = 7 per question
    assert relative.tau == pytest.approx(0.31) and relative.calibration.pass_at_1 == 1.0
    broke = select_tau("budget", cal, budget=0.5)
    assert not broke.feasible and broke.tau == 0.0 and "cheapest" in broke.note


def test_tau_chosen_on_calibration_is_reported_on_test():
    test = CascadeData(
        confidence=np.array([0.5, 0.85, 0.95]),
        slm_correct=np.array([0, 1, 1], bool),
        llm_correct=np.array([1, 1, 0], bool),
        slm_cost=np.ones(3),
        llm_cost=np.full(3, 4.0),
    )
    choice = report_on_test(select_tau("llm_pass", table()), test)  # tau = 0.8
    assert choice.test.tau == pytest.approx(0.8)
    assert (choice.test.pass_at_1, choice.test.avg_cost) == pytest.approx((1.0, 1 + 4 / 3))
    assert choice.test.llm_fraction == pytest.approx(1 / 3)


def test_bad_rules_and_arrays_are_user_errors():
    with pytest.raises(CoreaError, match="unknown tau rule"):
        select_tau("median", table())
    with pytest.raises(CoreaError, match="budget"):
        select_tau("budget", table())  # the rule needs `budget`
    with pytest.raises(CoreaError, match="llm_correct: 4 questions, expected 5"):
        CascadeData(np.zeros(5), np.zeros(5), np.zeros(4), np.zeros(5), np.zeros(5))
    with pytest.raises(CoreaError, match="slm_cost"):
        CascadeData(np.zeros(2), np.zeros(2), np.zeros(2), np.array([1, NAN]), np.zeros(2))


def test_calibration_mask_is_seeded_by_id_not_by_order():
    ids = [f"q{i}" for i in range(10)]
    mask = calibration_mask(ids, 0.5, seed=3)
    assert mask.sum() == 5
    reversed_mask = calibration_mask(ids[::-1], 0.5, seed=3)
    assert reversed_mask[::-1].tolist() == mask.tolist()
    assert calibration_mask(ids, 0.3).sum() == 3
    with pytest.raises(CoreaError, match="not unique"):
        calibration_mask(["a", "a"], 0.5)


def test_mean_token_probability_hand_values_and_jit():
    logprobs = np.log(np.array([[0.5, 0.25, 0.9], [1.0, 0.1, 0.1], [0.3, 0.3, 0.3]]))
    mask = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]], bool)
    arith = np.asarray(mean_token_probability(logprobs, mask))
    assert arith[:2] == pytest.approx([0.375, 1.0], rel=1e-6) and np.isnan(arith[2])
    geo = np.asarray(mean_token_probability(logprobs, mask, kind="geometric"))
    assert geo[:2] == pytest.approx([math.sqrt(0.125), 1.0], rel=1e-6) and np.isnan(geo[2])
    jitted = jax.jit(mean_token_probability, static_argnames="kind")
    assert np.asarray(jitted(logprobs, mask))[:2] == pytest.approx(arith[:2])
    with pytest.raises(CoreaError, match="kind"):
        mean_token_probability(logprobs, mask, kind="median")


def test_calibration_mask_keeps_a_repeated_problem_on_one_side():
    ids = [f"q{i}" for i in range(60)]
    problems = [f"problem {i % 13}" for i in range(60)]  # 13 problems, each asked 4-5 times
    mask = calibration_mask(ids, 0.5, seed=1, problems=problems)
    cal = {p for p, m in zip(problems, mask, strict=True) if m}
    test = {p for p, m in zip(problems, mask, strict=True) if not m}
    assert cal and test and not cal & test
    assert abs(mask.sum() - 30) <= 5  # about half the questions, whole problems at a time
    assert np.array_equal(mask, calibration_mask(ids, 0.5, seed=1, problems=problems))


def test_calibration_mask_is_unrelated_to_the_simulated_llms_draws():
    """Both hash the question with the same seed; unsalted, the calibration half was exactly
    the questions the simulated LLM gets right (LLM pass@1 1.0 there, 0.7 on the test half)."""
    from corea_jax.testing.simulated_llm import gold_answer_policy

    questions = [f"[steps 1, digits 2] What is {i} + {i + 7}?" for i in range(400)]
    policy = gold_answer_policy({q: (str(2 * i + 7), "numeric", 0) for i, q in
                                 enumerate(questions)}, accuracy=0.7, seed=0)  # fmt: skip
    answer = lambda q: policy([{"role": "user", "content": q}], None)[0]  # noqa: E731
    right = np.array([f">{2 * i + 7}<" in answer(q) for i, q in enumerate(questions)])
    mask = calibration_mask([f"q{i}" for i in range(400)], 0.5, seed=0, problems=questions)
    assert abs(right[mask].mean() - right[~mask].mean()) < 0.12

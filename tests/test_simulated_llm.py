"""The simulated LLM's accuracy model: digit work by hand, and answers right at the stated rate."""

import math

import numpy as np
import pytest

from corea_jax.cascade.settings import LLMConfig
from corea_jax.data import synthetic
from corea_jax.testing.simulated_llm import (
    digit_operations,
    gold_answer_policy,
    question_accuracy,
    simulated_identity,
)


def _problem(start, *ops, digits=2):
    return synthetic.Problem(start=start, ops=tuple(ops), digits=digits)


def test_digit_operations_by_hand():
    assert digit_operations(_problem(3, ("+", 4), digits=1)) == 1  # one column
    assert digit_operations(_problem(8, ("+", 5), digits=1)) == 2  # one column and its carry
    assert digit_operations(_problem(34, ("+", 57))) == 3  # 4+7 carries; 3+5+1
    assert digit_operations(_problem(52, ("-", 17))) == 3  # 2-7 borrows; 5-1-1
    assert digit_operations(_problem(12, ("*", 34))) == 8  # 2 x 2 digit pairs, 2 each
    # Steps add up, each on the running value: 34+57 = 91, then 91-17: 1-7 borrows, 9-1-1.
    assert digit_operations(_problem(34, ("+", 57), ("-", 17))) == 3 + 3


def test_accuracy_falls_with_digit_work_and_levels_still_work():
    records = synthetic.make_split(synthetic.SyntheticTask(), "test", 900)
    llm = LLMConfig(simulated=True, simulated_difficulty_decay=0.025)
    p = np.array([llm.simulated_accuracy_of(r) for r in records])
    work = np.array([digit_operations(synthetic.problem_of(r)) for r in records])
    assert np.allclose(p, 0.99 * np.exp(-0.025 * work))
    assert 0.8 < p.mean() < 0.9 and len(np.unique(p)) > 10  # per question, not per level
    by_level = LLMConfig(simulated=True, simulated_accuracy_by_level={"1,1": 0.5})
    easy = next(r for r in records if r.metadata["steps"] == 1 and r.metadata["digits"] == 1)
    hard = next(r for r in records if r.metadata["steps"] == 3)
    assert by_level.simulated_accuracy_of(easy) == 0.5
    assert by_level.simulated_accuracy_of(hard) == by_level.simulated_accuracy == 0.7
    assert question_accuracy(easy, 0.7) == 0.7


def test_policy_is_right_at_the_stated_rate_and_identity_names_the_model():
    answers = {f"q{i}": ("7", "numeric", 0, 0.3 if i % 2 else 0.9) for i in range(4000)}
    policy = gold_answer_policy(answers, accuracy=0.5, seed=1)
    right = np.array([("<answer>7</answer>" in policy([{"content": q}], {})[0]) for q in answers])
    assert right[1::2].mean() == pytest.approx(0.3, abs=0.03)
    assert right[0::2].mean() == pytest.approx(0.9, abs=0.03)
    plain = simulated_identity(0.7, 0, {})
    assert simulated_identity(0.7, 0, {}, (0.0, 0.99)) == plain  # caches made before stay valid
    assert simulated_identity(0.7, 0, {}, (0.025, 0.99)) != plain
    assert math.isclose(0.99 * math.exp(-0.025), 0.9655, abs_tol=1e-4)

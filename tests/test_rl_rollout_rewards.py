"""Rollout texts -> [B, G] scores (the one scoring path) -> rewards and advantages."""

import jax.numpy as jnp
import numpy as np
import pytest

from corea_jax.errors import CoreaError
from corea_jax.rl import rewards
from corea_jax.rl.advantages import AdvantageConfig, group_advantages
from corea_jax.rl.rollout_rewards import (
    group_rewards,
    load_extra_term,
    rewards_and_advantages,
    score_groups,
)
from corea_jax.scoring.grading_workers import Grader
from corea_jax.scoring.score import ScoreItem


def rlcr(answer="42", confidence="0.85"):
    return f"<think>t</think>\n<answer>{answer}</answer>\n<confidence>{confidence}</confidence>"


@pytest.fixture(scope="module")
def grader():
    with Grader(workers=0) as g:
        yield g


def test_scores_are_grouped_with_invalid_confidences_read_as_zero(grader):
    texts = [rlcr(confidence="0.9"), rlcr(confidence="x"), rlcr(answer=""), "junk"]
    scored = score_groups(texts, [ScoreItem("42", "numeric"), ScoreItem("7", "numeric")], 2, grader)
    assert scored.correct.shape == scored.format_ok.shape == scored.confidence_valid.shape == (2, 2)
    conf = scored.confidence_or(0.0)
    assert conf.dtype == np.float32
    np.testing.assert_allclose(conf, [[0.9, 0.0], [0.85, 0.0]])
    np.testing.assert_array_equal(scored.confidence_valid, [[True, False], [True, False]])
    np.testing.assert_array_equal(scored.format_ok, [[True, False], [False, False]])
    np.testing.assert_array_equal(scored.correct, [[True, True], [False, False]])
    assert scored.answer == ["42", "42", None, None]
    assert scored.format_reason[2] == "empty answer"


def test_texts_that_do_not_form_b_by_g_are_refused(grader):
    with pytest.raises(ValueError, match="texts for"):
        score_groups([rlcr()] * 3, [ScoreItem("42")] * 2, 2, grader)


def test_multiple_choice_is_graded_with_its_options(grader):
    # The scoring fix: training now reads choice letters and knows the options, as the
    # cascade does, so "(B) Paris" and "Paris" are right where "B" is the gold letter.
    item = ScoreItem("B", "choice", (("A", "London"), ("B", "Paris"), ("C", "Rome")))
    texts = [rlcr("(B) Paris"), rlcr("Paris"), rlcr("B"), rlcr("Rome")]
    scored = score_groups(texts, [item], 4, grader)
    np.testing.assert_array_equal(scored.correct, [[True, True, True, False]])


def test_group_rewards_equal_the_kernel_on_the_scored_arrays(grader):
    texts = [rlcr(confidence="0.9"), rlcr(answer="1", confidence="0.2"), "junk", rlcr()]
    scored = score_groups(texts, [ScoreItem("42", "numeric")] * 2, 2, grader)
    config = rewards.PRESETS["corea"]
    parts = group_rewards(scored, texts, config)
    want = rewards.compute_rewards(
        jnp.asarray(scored.correct), jnp.asarray(scored.confidence_or(0.0)),
        jnp.asarray(scored.format_ok), config,
    )  # fmt: skip
    for key in want:
        np.testing.assert_array_equal(parts[key], want[key])
    # Hand-computed: group 0 has p_hat = 0.5; sample 0 right at 0.9 -> 1 + 1 - 0.4.
    assert float(parts["reward"][0, 0]) == pytest.approx(1.6)


def test_extra_term_is_added_and_its_shape_checked(grader):
    texts = [rlcr()] * 4
    scored = score_groups(texts, [ScoreItem("42")] * 2, 2, grader)

    def bonus(correct, confidence, format_ok, texts):
        return jnp.full(correct.shape, 0.5)

    parts = group_rewards(scored, texts, rewards.PRESETS["rlvr"], bonus)
    np.testing.assert_allclose(parts["reward"], 2.5)
    np.testing.assert_allclose(parts["extra"], 0.5)

    def transposed(correct, **_):
        return jnp.zeros((correct.shape[1] + 1, correct.shape[0]))

    with pytest.raises(CoreaError, match="transposed: returned shape"):
        group_rewards(scored, texts, rewards.PRESETS["rlvr"], transposed)


def test_advantages_are_row_major_per_completion(grader):
    texts = [rlcr(), rlcr(answer="1"), rlcr(), rlcr()]
    scored = score_groups(texts, [ScoreItem("42")] * 2, 2, grader)
    config = AdvantageConfig(std_scaling="group")
    adv, metrics = rewards_and_advantages(scored, texts, rewards.PRESETS["rlvr"], config)
    parts = group_rewards(scored, texts, rewards.PRESETS["rlvr"])
    want, _ = group_advantages(parts["reward"], config)
    assert adv.shape == (4,)
    np.testing.assert_array_equal(adv, np.asarray(want).reshape(-1))
    assert metrics["accuracy"] == 0.75 and metrics["zero_variance_groups"] == 0.5
    assert metrics["reward"] == pytest.approx(float(jnp.mean(parts["reward"])))


def test_load_extra_term():
    assert load_extra_term("") is None
    assert load_extra_term("json:dumps").__name__ == "dumps"
    with pytest.raises(CoreaError, match="expected 'module:function'"):
        load_extra_term("nope")
    with pytest.raises(CoreaError, match="cannot import"):
        load_extra_term("json:no_such_function")

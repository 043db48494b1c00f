"""The held-out evaluation: greedy completions in batches, scored by the one scoring path."""

import numpy as np
import pytest

from corea_jax.rl.evaluation import EVAL_KEYS, evaluate
from corea_jax.rl.rollout import Task
from corea_jax.sampling.sampler import GREEDY, SampleBatch
from corea_jax.scoring.grading_workers import Grader
from corea_jax.scoring.score import ScoreItem

TEXTS = {
    1: "<think>t</think><answer>4</answer><confidence>0.9</confidence>",
    2: "<think>t</think><answer>(B) Paris</answer><confidence>0.5</confidence>",
    3: "no format at all",
}


class FakeSampler:
    """Answers prompt [k] with text k; records each call's batch."""

    def __init__(self):
        self.calls = []

    def generate(self, prompts, *, max_new_tokens, method, params):
        assert method is GREEDY and params == "params"
        self.calls.append(len(prompts))
        tokens = np.array([[p[0]] for p in prompts], np.int32)
        ones = np.ones(len(prompts), np.int32)
        zeros = np.zeros((len(prompts), 1), np.float32)
        return SampleBatch(
            tokens, ones, zeros, zeros, ["stop"] * len(prompts), np.arange(len(prompts))
        )


class FakeTokenizer:
    def decode(self, tokens, skip_special_tokens):
        return TEXTS[tokens[0]]


def test_evaluation_scores_greedy_answers_with_their_items():
    task = Task(
        prompts=[[1], [2], [3]],
        items=[ScoreItem("4", "numeric"),
               ScoreItem("B", "choice", (("A", "London"), ("B", "Paris"))),
               ScoreItem("1", "numeric")],
    )  # fmt: skip
    sampler = FakeSampler()
    with Grader(workers=0) as grader:
        out = evaluate(sampler, FakeTokenizer(), task, grader, params="params", batch_size=2,
                       max_new_tokens=8)  # fmt: skip
    assert sampler.calls == [2, 1]
    assert set(out) == {f"eval/{k}" for k in EVAL_KEYS}
    assert out["eval/pass@1"] == pytest.approx(2 / 3)  # the choice answer is graded right
    assert out["eval/format_rate"] == pytest.approx(2 / 3)
    assert out["eval/mean_confidence"] == pytest.approx((0.9 + 0.5 + 0.0) / 3)

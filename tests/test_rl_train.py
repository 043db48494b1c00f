"""Pieces of the loop: one GRPO batch from a rollout (seeded by the step), SIGTERM handling."""

import os
import signal

import numpy as np

from corea_jax.rl.advantages import AdvantageConfig
from corea_jax.rl.config import RunConfig, TrainConfig
from corea_jax.rl.rollout import RolloutConfig, Task, rollout_seed
from corea_jax.rl.train import _SigtermFlag, grpo_batch
from corea_jax.sampling.sampler import SampleBatch
from corea_jax.scoring.grading_workers import Grader
from corea_jax.scoring.score import ScoreItem

TEXTS = {
    3: "<think>t</think><answer>4</answer><confidence>0.9</confidence>",
    4: "<think>t</think><answer>5</answer><confidence>0.2</confidence>",
}


class FakeSampler:
    pad_id = 0

    def generate(self, prompts, *, max_new_tokens, n, method, seed, params):
        self.seed = seed
        rows = len(prompts) * n
        tokens = np.where(np.arange(rows) % 2 == 0, 3, 4)[:, None].repeat(2, 1).astype(np.int32)
        lengths = np.full(rows, 2, np.int32)
        logprobs = np.full((rows, 2), -1.0, np.float32)
        index = np.repeat(np.arange(len(prompts)), n)
        return SampleBatch(tokens, lengths, logprobs, logprobs, ["stop"] * rows, index)


class FakeTokenizer:
    def decode(self, tokens, skip_special_tokens):
        return TEXTS[tokens[0]]


def test_a_grpo_batch_from_scored_groups():
    task = Task(prompts=[[7, 8], [9], [5]], items=[ScoreItem("4", "numeric")] * 3)
    run = RunConfig(train=TrainConfig(seed=2), rollout=RolloutConfig(group_size=2))
    sampler = FakeSampler()
    with Grader(workers=0) as grader:
        batch, metrics = grpo_batch(
            sampler, FakeTokenizer(), task, np.array([2, 0]), run=run, step=5, params=None,
            grader=grader, prompt_slots=4,
        )  # fmt: skip
    assert sampler.seed == rollout_seed(2, 5)
    assert batch.tokens.shape == (4, 4 + 2) and batch.weights.shape == (4, 2)
    np.testing.assert_array_equal(batch.tokens[:, :4], [[0, 0, 0, 5]] * 2 + [[0, 0, 7, 8]] * 2)
    # Each group: one right at 0.9, one wrong at 0.2 -> rewards differ, advantages +/- equal.
    # One advantage per completion, broadcast over its C = 2 slots.
    assert batch.advantages.shape == (4, 2)
    assert batch.advantages[0, 0] > 0 > batch.advantages[1, 0]
    np.testing.assert_allclose(batch.advantages[0::2], 0.45, rtol=1e-6)  # 1.6 - 1.15
    np.testing.assert_allclose(batch.advantages[1::2], -0.45, rtol=1e-6)  # 0.7 - 1.15
    np.testing.assert_array_equal(batch.old_logprobs, -1.0)
    assert metrics["accuracy"] == 0.5 and metrics["format_rate"] == 1.0
    assert metrics["completion_length"] == 2.0
    assert {"time/rollout", "time/grading", "tokens_per_s", "batch_ece"} <= set(metrics)


class CharSampler(FakeSampler):
    """Completions whose ids are the characters of TEXTS' texts, one per token."""

    def generate(self, prompts, *, max_new_tokens, n, method, seed, params):
        out = super().generate(prompts, max_new_tokens=max_new_tokens, n=n, method=method,
                               seed=seed, params=params)  # fmt: skip
        texts = [TEXTS[int(t)] for t in out.tokens[:, 0]]
        width = max(len(t) for t in texts) + 1
        tokens = np.zeros((len(texts), width), np.int32)  # 0: padding past each row
        for r, t in enumerate(texts):
            tokens[r, : len(t)] = [ord(ch) for ch in t]
        lengths = np.array([len(t) for t in texts], np.int32)
        logprobs = np.zeros(tokens.shape, np.float32)
        return SampleBatch(tokens, lengths, logprobs, logprobs, out.finish_reasons,
                           out.prompt_index)  # fmt: skip


class CharTokenizer:
    def decode(self, tokens, skip_special_tokens):
        return "".join(chr(t) for t in tokens)


def test_a_grpo_batch_with_confidence_spans():
    task = Task(prompts=[[7, 8], [9]], items=[ScoreItem("4", "numeric")] * 2, levels=["a", "b"])
    run = RunConfig(
        train=TrainConfig(seed=2), rollout=RolloutConfig(group_size=2),
        advantage=AdvantageConfig(spans="confidence"),
    )  # fmt: skip
    with Grader(workers=0) as grader:
        batch, metrics = grpo_batch(
            CharSampler(), CharTokenizer(), task, np.array([1, 0]), run=run, step=0,
            params=None, grader=grader, prompt_slots=4,
        )  # fmt: skip
    text = TEXTS[3]
    span = slice(text.index("<confidence>"), len(text))
    adv = batch.advantages
    assert adv.shape == (4, len(text) + 1)
    # Rest: c + f = 2 and 1 per group -> +0.5, -0.5. Calibration (L1 to p_hat = 0.5): -0.4
    # and -0.3 -> -0.05, +0.05 on the confidence span's tokens only.
    np.testing.assert_allclose(adv[0::2, : span.start], 0.5, rtol=1e-6)
    np.testing.assert_allclose(adv[1::2, : span.start], -0.5, rtol=1e-6)
    np.testing.assert_allclose(adv[0::2, span], -0.05, rtol=1e-5)
    np.testing.assert_allclose(adv[1::2, span], 0.05, rtol=1e-5)
    assert metrics["level/a/accuracy"] == 0.5 and metrics["level/b/accuracy"] == 0.5
    assert metrics["confidence_span_tokens"] == len(text) - span.start


def test_sigterm_sets_a_flag_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with _SigtermFlag() as flag:
        assert not flag.raised
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.raised
    assert signal.getsignal(signal.SIGTERM) is before

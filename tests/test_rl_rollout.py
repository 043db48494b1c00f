"""Rollout: G samples of each prompt with the run's seed and method, decoded to R texts."""

import numpy as np

from corea_jax.rl.rollout import RolloutConfig, rollout_seed, sample_groups
from corea_jax.sampling import TopK, TopP
from corea_jax.sampling.sampler import SampleBatch


def test_rollout_seed_is_the_one_formula():
    assert rollout_seed(0, 5) == 5
    assert rollout_seed(3, 7) == 3 * 1_000_003 + 7


def test_config_chooses_the_sampling_method():
    assert RolloutConfig().method().temperature == 1.0
    assert isinstance(RolloutConfig(top_k=5).method(), TopK)
    assert isinstance(RolloutConfig(top_p=0.9).method(), TopP)
    assert RolloutConfig().max_new_tokens == 2048 and RolloutConfig().group_size == 8  # PAPER.md


class FakeSampler:
    def generate(self, prompts, *, max_new_tokens, n, method, seed, params):
        self.args = dict(max_new_tokens=max_new_tokens, n=n, seed=seed, params=params)
        rows = len(prompts) * n
        tokens = np.arange(rows, dtype=np.int32)[:, None].repeat(3, axis=1)
        lengths = np.full(rows, 2, np.int32)
        zeros = np.zeros((rows, 3), np.float32)
        index = np.repeat(np.arange(len(prompts)), n)
        return SampleBatch(tokens, lengths, zeros, zeros, ["stop"] * rows, index)


class FakeTokenizer:
    def decode(self, tokens, skip_special_tokens):
        return "-".join(map(str, tokens))


def test_groups_are_sampled_and_decoded_row_by_row():
    sampler = FakeSampler()
    config = RolloutConfig(group_size=3, max_new_tokens=16)
    rollout = sample_groups(sampler, FakeTokenizer(), [[1], [2]], config, seed=11, params="p")
    assert sampler.args == dict(max_new_tokens=16, n=3, seed=11, params="p")
    assert rollout.texts == [f"{r}-{r}" for r in range(6)]  # R = B * G rows, lengths applied
    assert rollout.seconds >= 0

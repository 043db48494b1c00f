"""Run settings: each config section is its dataclass's fields, built with Cls(**section); the
dataclass holds the default and configs/common.py restates none of them."""

import dataclasses

import pytest

from configs.common import base_config
from corea_jax.errors import CoreaError
from corea_jax.rl.config import SECTIONS, RunConfig, TrainConfig
from corea_jax.rl.train_step import OptimConfig


def test_each_section_is_its_dataclass_with_its_defaults():
    c = base_config()
    run = RunConfig.from_config(c)
    for name, cls in SECTIONS.items():
        assert set(c[name].keys()) == {f.name for f in dataclasses.fields(cls)}, name
        assert getattr(run, name) == cls(), name  # common.py overrides none of them


def test_paper_values_are_the_defaults():
    run = RunConfig()
    assert run.rollout.max_new_tokens == 2048 and run.rollout.group_size == 8
    assert run.optim.warmup_steps == 10 and run.optim.learning_rate == 1e-6
    assert run.train.prompts_per_step == 32 and run.train.micro_batches == 8
    # Derived, not set: the cosine's length is train.steps.
    assert "total_steps" not in {f.name for f in dataclasses.fields(OptimConfig)}
    # Options the paper leaves open default to its own update: one advantage per completion,
    # COREA's group target.
    assert run.advantage.spans == "none" and run.advantage.confidence_baseline == "group"
    assert run.reward.target_mix == 1.0
    # Settable now: the log interval and the evaluation batch.
    assert TrainConfig(log_every=5, eval_batch=8).log_every == 5


def test_a_misspelt_key_or_a_bad_mode_names_the_section():
    c = base_config()
    c.unlock()
    c.train.sft_confidense = 0.5
    with pytest.raises(CoreaError, match="unknown config key train.sft_confidense"):
        RunConfig.from_config(c)
    with pytest.raises(CoreaError, match="train.mode 'ppo'"):
        TrainConfig(mode="ppo")


def test_segment_advantage_and_target_mix_keys_are_read_and_checked():
    c = base_config()
    c.advantage.spans = "confidence"
    c.advantage.confidence_baseline = "outcome"
    c.reward.target_mix = 0.5
    run = RunConfig.from_config(c)
    assert run.advantage.spans == "confidence" and run.advantage.confidence_baseline == "outcome"
    assert run.reward.kernel().target_mix == 0.5
    c.reward.target_mix = 2.0
    with pytest.raises(CoreaError, match="reward.target_mix=2.0"):
        RunConfig.from_config(c)
    c.reward.target_mix = 1.0
    c.advantage.spans = "tokens"
    with pytest.raises(CoreaError, match="advantage.spans='tokens'"):
        RunConfig.from_config(c)

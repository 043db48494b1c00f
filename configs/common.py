"""Shared defaults of every experiment config; each file changes only what it must.

The values marked [open] are choices the paper leaves open (see ../shared/PAPER.md); they are
documented where they are coded (corea_jax/rl/rewards.py, advantages.py, grpo.py, train_step.py).
The training sections (rollout, reward, advantage, loss, optim, train) are their dataclasses'
defaults, which are PAPER.md's values: G = 8, 2048 new tokens, lr 1e-6 after a 10-step warm-up.
"""

import dataclasses

import ml_collections
from ml_collections import config_dict

from corea_jax.rl.advantages import AdvantageConfig
from corea_jax.rl.config import TrainConfig
from corea_jax.rl.grpo import LossConfig
from corea_jax.rl.rewards import RewardPresetConfig
from corea_jax.rl.rollout import RolloutConfig
from corea_jax.rl.train_step import OptimConfig, UpdateComputeConfig


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = dict(
        path="",  # HF model directory (e.g. a local copy of Qwen/Qwen2.5-7B-Instruct)
        dtype="bfloat16",
        # A from-scratch model (tokenizer trained on the synthetic task), for offline runs.
        scratch=dict(
            enabled=False,
            spec=dict(hidden_size=128, intermediate_size=384, num_layers=2, num_heads=4,
                      num_kv_heads=2, vocab_size=512, split_digits=True, family="qwen2",
                      seed=0),
        ),
    )  # fmt: skip
    c.data = dict(
        source="deepmath",  # "synthetic", or a reader of corea_jax.data (deepmath, math500, ...)
        path="",
        tfds_dir="",  # a prepared TFDS directory to read `source` from instead of `path`
        train_size=16_000,  # DeepMath16K [open: our seeded split]
        synthetic=dict(seed=0, min_steps=1, max_steps=3, min_digits=1, max_digits=3),
    )
    # The training sections hold their dataclasses' defaults (corea_jax/rl/config.py: the one
    # home of each default); only what differs for every run is overridden here, with a reason.
    c.rollout = dataclasses.asdict(RolloutConfig())
    # preset: a key of rewards.PRESETS. [open] target_mix (lambda in [0, 1], default 1): the
    # calibration target is lambda * p_hat + (1 - lambda) * c; 1 is COREA's group target (the
    # paper), 0 the sample's own correctness, 0.5 DCPO's blend.
    c.reward = dataclasses.asdict(RewardPresetConfig())
    # [open] RLCR: no std scaling. [open] spans: "none" (default: one advantage per completion,
    # as the paper's GRPO) or "confidence" (the <confidence> span's tokens get the calibration
    # advantage, the others correctness + format: DCPO / BAE); confidence_baseline: "group"
    # (default) or "outcome" (centred within a group's right and its wrong samples apart).
    # See corea_jax/rl/advantages.py.
    c.advantage = dataclasses.asdict(AdvantageConfig())
    c.loss = dataclasses.asdict(LossConfig())  # [open] clip 0.2 / 0.2, beta 0, token mean
    # Optional: None is dr_grpo's "the batch's C"; a placeholder lets an override set an int.
    c.loss.max_completion_len = config_dict.placeholder(int)
    c.optim = dataclasses.asdict(OptimConfig())
    c.train = dataclasses.asdict(TrainConfig())
    c.compute = dataclasses.asdict(UpdateComputeConfig())  # remat, attention, logprob_chunk
    c.mesh = dict(shape=(1, -1, 1))  # ('data', 'fsdp', 'tensor'); -1 takes the remaining devices
    return c

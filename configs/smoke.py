"""Smoke run: a tiny from-scratch Qwen2-architecture model on the synthetic task, on a CPU.

    corea-jax train --config=configs/smoke.py --workdir=/tmp/smoke

A few GRPO steps with the COREA reward (or `:sft` for the supervised warm-up), finishing in
under a minute on a 2-core CPU; CI runs it. It serves no paper table: it proves the loop
(rollout, grading, rewards, update, checkpoint, export) end to end.
"""

from .common import base_config


def get_config(arg=None):
    c = base_config()
    c.model.scratch.enabled = True
    c.model.dtype = "float32"
    c.data.source = "synthetic"
    c.data.train_size = 256
    c.rollout.group_size = 4
    c.rollout.max_new_tokens = 32
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 0
    c.train.steps = 3
    c.train.prompts_per_step = 2
    c.train.micro_batches = 2
    c.train.checkpoint_every = 2
    c.train.grading_workers = 1
    c.train.eval_every = 3
    c.train.eval_size = 8
    c.train.eval_max_new_tokens = 32
    if arg == "sft":
        c.train.mode = "sft"
    return c

"""Shared defaults of every experiment config; each file changes only what it must.

The values marked [open] are choices the paper leaves open (see ../shared/PAPER.md); they are
documented where they are coded (corea_jax/rl/rewards.py, advantages.py, grpo.py, train_step.py).
"""

import ml_collections


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
        train_size=16_000,  # DeepMath16K [open: our seeded split]
        synthetic=dict(seed=0, min_steps=1, max_steps=3, min_digits=1, max_digits=3),
    )
    c.rollout = dict(group_size=8, max_new_tokens=2048, temperature=1.0, top_p=1.0, top_k=0)
    c.reward = dict(
        preset="corea",  # rlvr | brier | corea | corea_l2 | corea_kl
        correctness_weight=1.0,  # [open]
        format_weight=1.0,  # [open]
        calibration_weight=1.0,  # [open]
        kl_eps=0.01,  # [open] confidence clipping of the KL distance
        extra_term="",  # "module:function" adding a user-defined reward term
    )
    c.advantage = dict(baseline="mean", std_scaling="none", ddof=1)  # [open] RLCR: no std
    c.loss = dict(eps_low=0.2, eps_high=0.2, beta=0.0, aggregation="token_mean")  # [open]
    c.optim = dict(
        learning_rate=1e-6, warmup_steps=10, schedule="constant", weight_decay=0.0,
        max_grad_norm=1.0,
    )  # fmt: skip
    c.train = dict(
        steps=500, prompts_per_step=32, num_iterations=1, micro_batches=8, seed=0,
        mode="grpo", sft_confidence=0.9, sft_random_confidence=0.0, checkpoint_every=25,
        keep_checkpoints=3, grading_workers=8, export=True, tensorboard=True,
        eval_every=50, eval_size=500, eval_max_new_tokens=2048,
    )  # fmt: skip
    c.mesh = dict(shape=(1, -1, 1))  # ('data', 'fsdp', 'tensor'); -1 takes the remaining devices
    return c

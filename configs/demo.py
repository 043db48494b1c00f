"""The offline demo: COREA vs RLVR vs Brier on the synthetic task, with a SIMULATED LLM.

    corea-jax demo                                     # default budgets (CPU, see README)
    corea-jax demo --config=configs/demo.py:quick      # a few minutes: wiring, not claims
    corea-jax demo --workdir=workdirs/demo --config.rl.train.steps=200

Serves no paper table directly: it reproduces the *shape* of the paper's claims (COREA's
calibration vs RLVR at equal accuracy; the cascade's cost saving vs LLM-only at tau = LLM
pass@1) with a tiny from-scratch model, on a CPU, offline.

The simulated LLM is right with probability 0.97 - 0.05 x (steps - 1) - 0.07 x (digits - 1)
on a question of the synthetic task (0.97 on one 1-digit step, 0.73 on three 3-digit steps;
about 0.85 on average), decided by a hash of the question so re-runs agree. Its token usage is
characters / 4. SLM and LLM are charged at the Qwen2.5-7B / Qwen2.5-32B list prices of
corea_jax.cascade.DEFAULT_PRICES: the tiny SLM stands in for the paper's 7B.

Stage 1 (the SFT warm-up) is bundled as corea_jax/assets/demo_warmup (1.7 MB) because it takes
longer than the rest of the demo on a 2-core CPU (about 20 min: 1000 steps of 1.1 s); it is
used only while the warmup_* settings below are unchanged, and the commands in get_config
regenerate it from scratch.
"""

import ml_collections

from .common import base_config
from .eval_common import eval_config


def simulated_accuracy_by_level(max_steps=3, max_digits=3):
    return {
        f"{s},{d}": round(0.97 - 0.05 * (s - 1) - 0.07 * (d - 1), 4)
        for s in range(1, max_steps + 1)
        for d in range(1, max_digits + 1)
    }


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.policies = ("rlvr", "brier", "corea")
    # Stage 1, SFT warm-up. These settings made the bundled warm start
    # (corea_jax/assets/demo_warmup, used while they are unchanged); regenerate it with
    #   corea-jax demo --workdir=workdirs/warmup --warmup-only --config.warmup_model=''
    #   cp workdirs/warmup/warmup/export/* corea_jax/assets/demo_warmup/
    c.warmup_model = "bundled"  # "bundled" | "" (train it) | a HF model directory to start from
    c.warmup_steps = 1000
    c.warmup_batch = 128
    c.warmup_learning_rate = 1e-3
    c.warmup_lr_warmup_steps = 50
    # Constant after the lr warm-up. Measured (greedy pass@1 on 450 test questions): a cosine
    # decay over 1000 steps stalls before the model learns to carry (36%); constant, 55% at
    # step 1000 (near-perfect on 1-digit levels, weak on 3-digit ones: weaker than the
    # simulated LLM, as the paper's SLMs are). At 2000 steps it reaches 80%, level with the
    # simulated LLM, and COREA then rightly states ~1.0 everywhere: nothing left to defer.
    c.warmup_schedule = "constant"
    c.warmup_train_size = 30_000
    # [open] Share of warm-up traces stating a two-decimal confidence drawn uniformly in [0, 1]
    # (by a hash of the question) instead of sft_confidence, 0.9 (synthetic.warmup_confidence).
    # Without it every sample of a GRPO group states 0.9 and the calibration term has nothing to
    # compare. 0.5 (was 0.2, drawing from 11 tenths): about half the samples of a group state a
    # value spread over [0, 1], low ones included, so discreteness after GRPO is an outcome; the
    # mean stated value is 0.70, still above the warm model's accuracy (over-confident, as
    # instruct SLMs are). Chosen without looking at test results.
    c.warmup_random_confidence = 0.5

    t = base_config()
    t.model.scratch.enabled = True
    t.model.dtype = "float32"
    t.data.source = "synthetic"
    t.data.train_size = 4000
    t.rollout.group_size = 8
    t.rollout.max_new_tokens = 80  # the longest reference trace is 73 tokens
    # GRPO stage, the same for all three policies. Measured on this CPU from the warm start
    # (COREA, 150 steps): lr 3e-4 destroys the arithmetic in a few steps; 1e-4 oscillates;
    # 2e-5 leaves the confidence at 0.9 after 60 steps; 5e-5 learns it.
    t.optim.learning_rate = 5e-5
    t.optim.warmup_steps = 0
    # [open] Advantages divided by the group's reward std. Without it (RLCR's choice, the
    # library default) the tiny model's confidence moved too slowly in this budget: in groups
    # where every answer is right (easy levels) or wrong (hard ones) only the calibration term
    # differs, by a few tenths, and its advantages stay small. Measured, COREA at 150 steps:
    # cascade cost -1.8% vs LLM-only without std scaling, -22.2% with it.
    t.advantage.std_scaling = "group"
    t.train.steps = 150
    t.train.prompts_per_step = 8
    t.train.micro_batches = 1
    t.train.checkpoint_every = 50
    t.train.grading_workers = 1
    t.train.eval_every = 0
    t.train.sft_confidence = 0.9  # the warm-up traces' confidence: an over-confident start
    c.rl = t  # the GRPO policies' training config (and the warm-up's base): config.rl.train.*

    e = eval_config(())
    e.datasets = {"synthetic": dict(reader="synthetic", path="", split="test", limit=400)}
    e.slm.dtype = "float32"  # the tiny model runs on a CPU
    e.slm.max_new_tokens = 80  # as in training: the longest reference trace is 73 tokens
    e.slm.batch_size = 64
    e.llm.simulated = True  # offline: no real LLM is reached (every output says SIMULATED)
    e.llm.simulated_accuracy_by_level = simulated_accuracy_by_level()
    e.llm.concurrency = 8
    e.grading.workers = 1  # short answers on a 2-core CPU
    c.cascade = e

    if arg == "quick":
        t.train.steps = 8
        t.train.checkpoint_every = 8
        e.datasets.synthetic.limit = 120
    elif arg:
        raise ValueError(f"configs/demo.py: unknown argument {arg!r} (use :quick)")
    return c

"""num_iterations (mu) > 1: the schedule advances per update, resume is bitwise.

- Each update's learning rate follows warm-up then cosine over updates, with warm-up and length
  given in rollout steps (x mu): read off AdamW's parameter change under a constant gradient,
  where Adam's step is exactly lr x sign(g) (relative error ~1e-7, checked at 1e-5).
- A mu = 2 run killed with SIGKILL and resumed ends bitwise equal to the uninterrupted run, its
  checkpoints record rollout steps and updates apart (updates = 2 x steps), and its
  metrics.jsonl logs each step's learning rate (that of its last update) on the same schedule.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import kill_and_resume

from corea_jax.rl import checkpoint as ckpt
from corea_jax.rl.train_step import OptimConfig, make_optimizer

LR = 0.5


def _expected_rate(u, *, mu, warmup_steps, total_steps, lr=LR):
    """The rate of update u (0-based), written out: rollout step s = u / mu of the run."""
    warmup, total = warmup_steps * mu, total_steps * mu
    if u < warmup:
        return lr * u / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (u - warmup) / (total - warmup)))


@pytest.mark.parametrize("mu", [1, 2, 3])
def test_learning_rate_per_update_is_the_schedule_over_updates(mu):
    steps, warmup = 5, 2
    cfg = OptimConfig(learning_rate=LR, warmup_steps=warmup, schedule="cosine")
    optimizer = make_optimizer(cfg, total_steps=steps, updates_per_step=mu)
    params = {"w": jnp.zeros(4, jnp.float32)}
    grads = {"w": jnp.full(4, 0.1, jnp.float32)}  # constant: Adam's step is lr x sign(g)
    opt_state = optimizer.init(params)
    update = jax.jit(optimizer.update)
    rates = []
    for _ in range(steps * mu):
        updates, opt_state = update(grads, opt_state, params)
        rates.append(-float(updates["w"][0]))
    want = [
        _expected_rate(u, mu=mu, warmup_steps=warmup, total_steps=steps) for u in range(steps * mu)
    ]
    np.testing.assert_allclose(rates, want, rtol=1e-5, atol=1e-7)
    # Warm-up ends after warmup x mu updates whatever mu: the peak is at rollout step 2.
    assert rates[warmup * mu] == pytest.approx(LR, rel=1e-5)


def test_killed_mu2_run_resumes_to_the_same_parameters(tmp_path):
    common = ["--config.data.train_size=8", "--config.train.steps=5",
              "--config.train.num_iterations=2", "--config.train.checkpoint_every=1",
              "--config.train.eval_every=0", "--config.optim.learning_rate=3e-3",
              "--config.optim.schedule=cosine", "--config.optim.warmup_steps=2",
              "--config.reward.extra_term=reward_terms:length_bonus"]  # fmt: skip
    killed = kill_and_resume(tmp_path, common, kill_at=3)
    lines = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5]
    # The logged rate is that of each step's last update, 2 s - 1.
    want = [_expected_rate(2 * s - 1, mu=2, warmup_steps=2, total_steps=5, lr=3e-3)
            for s in range(1, 6)]  # fmt: skip
    np.testing.assert_allclose([x["learning_rate"] for x in lines], want, rtol=1e-5)
    meta = json.loads((killed / "checkpoints" / "5" / "meta" / "metadata").read_text())
    assert (meta["step"], meta["updates"], meta["data_position"]) == (5, 10, 10)
    # A resume with another mu would change the schedule: refused, naming the key.
    saved = ckpt.RunMetadata(5, {}, prompts_per_step=2, seed=0, num_iterations=2).to_json()
    ours = ckpt.RunMetadata(5, {}, prompts_per_step=2, seed=0, num_iterations=1)
    with pytest.raises(Exception, match="train.num_iterations=2, this run has 1"):
        ckpt.check_resumable(saved, ours, killed)

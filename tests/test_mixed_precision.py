"""Mixed precision and the update's memory options, through the real jitted update.

- A bf16 model at lr 1e-6 learns: every parameter of its float32 master copy moves, and after
  3 steps its total update stays within 10% (relative L2 norm over all parameters) of a float32
  run's from the same initial values on the same batch. A bf16 state, as before master
  weights, rounds `w - 1e-6 * ...` back to `w`: most weights never move.
- The master copy and AdamW's moments are float32 and sharded like the parameters (FSDP).
- The memory options (remat policies, attention kernels runnable on CPU, chunked log-probs)
  give the plain path's loss (relative 1e-5) and gradients (1e-5 of each leaf's largest
  entry), float32 on CPU; the gradient is read from an optimizer state that keeps it.
- The loop with a bf16 model (configs/smoke.py): checkpoints hold the float32 master copy and
  moments, a stopped and resumed run ends bitwise equal to a straight one, the export is bf16.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from test_train import _params, _train
from tiny_models import TINY

from corea_jax.models import CausalLM, param_shardings
from corea_jax.parallel.sharding import make_mesh
from corea_jax.rl import grpo
from corea_jax.rl.batch import batch_shardings
from corea_jax.rl.train_step import (
    OptimConfig,
    UpdateComputeConfig,
    compute_copy,
    init_train_state,
    jit_train_step,
    make_batch,
    make_optimizer,
)

CFG = dataclasses.replace(TINY["qwen2"], num_layers=1)
P, C = 6, 7  # prompt slots, completion slots
PROMPTS = [[5, 9, 13], [7, 8, 9, 10, 11, 12]]
PROMPT_INDEX = [0, 0, 1, 1]  # R = 4 rows
LENGTHS = [7, 3, 6, 1]
LOSS = grpo.LossConfig()
MASTER_TOL = 0.1  # relative L2 distance of the bf16 run's total update from the float32 run's
PARITY_TOL = 1e-5


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    completions = rng.integers(3, CFG.vocab_size, (len(PROMPT_INDEX), C)).astype(np.int32)
    return make_batch(
        PROMPTS, PROMPT_INDEX, completions, LENGTHS, prompt_slots=P, loss_config=LOSS,
        advantages=np.array([1.0, -0.5, 0.8, -1.3]),
        # About the tiny model's own log-probs (near uniform), so ratios start near 1.
        old_logprobs=np.full((len(PROMPT_INDEX), C), -np.log(CFG.vocab_size)),
    )  # fmt: skip


def _setup(dtype, optimizer, mesh, *, master_dtype="float32", compute=None, micro_batches=2):
    """The trainer's own wiring: model in `dtype`, master copy, jitted update."""
    model = CausalLM(CFG, dtype=dtype, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    shardings = param_shardings(model, mesh)
    params = jax.device_put(params, shardings)
    state, state_shardings = init_train_state(
        optimizer, params, shardings, mesh, master_dtype=master_dtype
    )
    batch_sh = batch_shardings(mesh, len(PROMPT_INDEX), P, C, with_ref=False)
    step = jit_train_step(
        graphdef, state_shardings, batch_sh, mesh, optimizer=optimizer, loss_config=LOSS,
        micro_batches=micro_batches, compute_dtype=jnp.dtype(dtype), compute=compute,
    )  # fmt: skip
    return state, step, jax.device_put(_batch(), batch_sh)


def _leaves(tree):
    return [np.asarray(x, np.float32) for x in jax.tree.leaves(tree)]


def test_bf16_run_at_lr_1e6_moves_its_float32_master_weights_like_a_float32_run():
    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-6, warmup_steps=0))
    bf16_state, bf16_step, batch = _setup(jnp.bfloat16, optimizer, mesh)
    f32_state, f32_step, _ = _setup(jnp.float32, optimizer, mesh)
    # The same initial values: the float32 run starts from the bf16 model's weights.
    f32_state = f32_state._replace(params=jax.tree.map(jnp.copy, bf16_state.params))
    for x in jax.tree.leaves((bf16_state.params, bf16_state.opt_state)):
        assert x.dtype in (jnp.float32, jnp.int32), x.dtype
    initial = _leaves(bf16_state.params)
    for _ in range(3):
        bf16_state, bf16_metrics = bf16_step(bf16_state, batch)
        f32_state, f32_metrics = f32_step(f32_state, batch)
        assert float(bf16_metrics["finite"]) == 1.0 and float(bf16_metrics["grad_norm"]) > 0
    assert int(bf16_state.updates) == 3
    got, want = _leaves(bf16_state.params), _leaves(f32_state.params)
    for w0, g in zip(initial, got, strict=True):
        assert (g != w0).mean() > 0.9  # bf16 weights + 1e-6 would round back
    # Adam turns float noise in near-zero gradients (the k bias's, ~0 in exact arithmetic)
    # into full-size steps, so single entries may differ by up to 2 x lr per step: the
    # tolerance is on the whole update (measured 0.053).
    diff = norm = 0.0
    for w0, g, w in zip(initial, got, want, strict=True):
        diff += np.sum(((g - w0) - (w - w0)) ** 2)
        norm += np.sum((w - w0) ** 2)
    assert np.sqrt(diff / norm) < MASTER_TOL, np.sqrt(diff / norm)
    # The sampler's copy: the master rounded to bf16 (moves only where the update crosses a
    # bf16 step, but is exactly the cast of the master).
    sampled = compute_copy(bf16_state.params, jnp.bfloat16)
    assert {x.dtype for x in jax.tree.leaves(sampled)} == {jnp.dtype(jnp.bfloat16)}
    assert compute_copy(f32_state.params, jnp.float32) is f32_state.params


def test_a_bf16_master_copy_loses_updates_of_1e6():
    """Why the master copy is float32: the state as it was (bf16 weights and moments)."""
    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-6, warmup_steps=0))
    state, step, batch = _setup(jnp.bfloat16, optimizer, mesh, master_dtype="bfloat16")
    initial = _leaves(state.params)
    for _ in range(3):
        state, metrics = step(state, batch)
        assert float(metrics["grad_norm"]) > 0
    moved = [np.mean(g != w0) for w0, g in zip(initial, _leaves(state.params), strict=True)]
    sizes = [w0.size for w0 in initial]
    assert np.average(moved, weights=sizes) < 0.2


def test_master_copy_and_moments_are_float32_and_sharded_like_the_parameters():
    mesh = make_mesh((1, -1, 1))  # every device on fsdp
    optimizer = make_optimizer(OptimConfig())
    model = CausalLM(CFG, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    shardings = param_shardings(model, mesh)
    params = jax.device_put(nnx.state(model, nnx.Param), shardings)
    state, state_shardings = init_train_state(
        optimizer, params, shardings, mesh, master_dtype="float32"
    )
    flat_params = jax.tree.leaves(state.params)
    sharded = [x for x in flat_params if not x.sharding.is_fully_replicated]
    assert sharded, "nothing is sharded over fsdp"
    assert all(x.dtype == jnp.float32 for x in flat_params)
    for moments in (optax.tree_utils.tree_get(state.opt_state, k) for k in ("mu", "nu")):
        for m, p in zip(jax.tree.leaves(moments), flat_params, strict=True):
            assert m.dtype == jnp.float32 and m.sharding == p.sharding


OPTIONS = {
    "remat full": UpdateComputeConfig(remat="full"),
    "remat save_dots": UpdateComputeConfig(remat="save_dots"),
    "attention dot_product_attention": UpdateComputeConfig(attention="dot_product_attention"),
    "logprob_chunk 3": UpdateComputeConfig(logprob_chunk=3),
    "all together": UpdateComputeConfig(remat="save_dots", attention="xla", logprob_chunk=4),
}


# An "optimizer" whose state is the last gradient and whose update is zero: the real update's
# gradient, read back exactly (a parameter difference would lose digits to cancellation).
KEEP_GRADS = optax.GradientTransformation(
    lambda params: jax.tree.map(jnp.zeros_like, params),
    lambda grads, state, params=None: (jax.tree.map(jnp.zeros_like, grads), grads),
)


def _update(compute):
    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    state, step, batch = _setup(jnp.float32, KEEP_GRADS, mesh, compute=compute)
    program = step.lower(state, batch).as_text()
    state, metrics = step(state, batch)
    return _leaves(state.opt_state), jax.tree.map(float, metrics), program


@pytest.fixture(scope="module")
def plain_update():
    return _update(None)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_memory_options_give_the_plain_loss_and_gradients(name, plain_update):
    plain_grads, plain_metrics, plain_program = plain_update
    grads, metrics, program = _update(OPTIONS[name])
    assert program != plain_program  # the option took effect
    for key in ("loss", "grad_norm", "entropy"):
        assert metrics[key] == pytest.approx(plain_metrics[key], rel=PARITY_TOL), key
    for got, want in zip(grads, plain_grads, strict=True):
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, atol=PARITY_TOL * max(scale, 1e-30), rtol=0)


def test_bf16_loop_checkpoints_the_float32_master_resumes_bitwise_and_exports_bf16(tmp_path):
    common = ["--config.model.dtype=bfloat16", "--config.train.eval_every=0",
              "--config.train.checkpoint_every=1",
              "--config.reward.extra_term=reward_terms:length_bonus"]  # fmt: skip
    assert _train(tmp_path / "straight", *common, "--config.train.steps=2") == 0
    split = tmp_path / "split"
    assert _train(split, *common, "--config.train.steps=1") == 0
    assert _train(split, *common, "--config.train.steps=2") == 0
    saved = ocp.StandardCheckpointer().metadata(split / "checkpoints" / "2" / "state")
    leaves = jax.tree.leaves(saved.item_metadata, is_leaf=lambda x: hasattr(x, "dtype"))
    assert {str(x.dtype) for x in leaves} == {"float32", "int32"}  # master, moments, counts
    straight, resumed = _params(tmp_path / "straight" / "export"), _params(split / "export")
    initial = _params(split / "initial_model")
    assert {str(x.dtype) for x in straight.values()} == {"bfloat16"}
    assert any(not np.array_equal(initial[k], straight[k]) for k in initial)
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)

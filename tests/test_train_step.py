"""The update: batch layout, teacher-forced log-probs, micro-batching and mesh invariance,
non-finite steps, SFT mode and the optimizer's schedules, on a 1-layer tiny model."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec
from tiny_models import TINY

from corea_jax.errors import CoreaError
from corea_jax.models import (
    CausalLM,
    causal_mask,
    load_model,
    param_shardings,
    positions_from_mask,
    save_model,
)
from corea_jax.parallel.sharding import make_mesh
from corea_jax.rl import grpo
from corea_jax.rl.train_step import (
    OptimConfig,
    TrainState,
    completion_logprobs,
    init_train_state,
    jit_train_step,
    make_batch,
    make_optimizer,
    split_micro_batches,
    train_step,
)

CONFIGS = {family: dataclasses.replace(TINY[family], num_layers=1) for family in TINY}
P, C = 6, 5  # prompt slots, completion slots
PROMPTS = [[5, 9, 13], [7, 8, 9, 10, 11, 12], [20]]  # the middle one fills every prompt slot
PROMPT_INDEX = [0, 0, 0, 1, 1, 1, 2, 2]  # R = 8 rows
LENGTHS = [5, 3, 1, 5, 4, 2, 5, 1]
LOSS = grpo.LossConfig(eps_low=0.2, eps_high=0.28, aggregation="sequence_mean")
# SGD with momentum for the equivalence tests: the first step moves each parameter by exactly
# -lr * grad, so comparing parameters compares gradients. (Adam's first step is lr * sign(g),
# which would hide gradient differences and turn float noise in near-zero gradients into
# full-size steps.) Momentum gives the optimizer a params-shaped state to shard; the learning
# rate lives in the state, so the huge-lr test reuses the compiled step.
SGD = optax.inject_hyperparams(optax.sgd)(learning_rate=1.0, momentum=0.9)


def _scaled(model, scale=4.0):
    """Larger initial weights, so log-probs are far from uniform (as in test_sampling)."""
    state = nnx.state(model)
    nnx.update(model, jax.tree.map(lambda x: x * scale if x.ndim == 2 else x, state))
    return model


def _completions(rows, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(3, CONFIGS["qwen2"].vocab_size, (rows, C)).astype(np.int32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = _scaled(CausalLM(CONFIGS["qwen2"], rngs=nnx.Rngs(0)))
    return save_model(model, tmp_path_factory.mktemp("train_step") / "qwen2")


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_model(checkpoint)


@pytest.fixture(scope="module")
def batch(model):
    """A GRPO batch whose old log-probs are the model's own, perturbed: some ratios clip."""
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(1)
    completions = _completions(8)
    sft = make_batch(PROMPTS, PROMPT_INDEX, completions, LENGTHS, prompt_slots=P, loss_config=LOSS)
    logprobs, _ = _logprobs(graphdef, params, sft.tokens, sft.valid, C)
    mask = sft.valid[:, P:]
    old = np.where(mask, np.asarray(logprobs) + rng.normal(0, 0.3, mask.shape), 0.0)
    return make_batch(
        PROMPTS,
        PROMPT_INDEX,
        completions,
        LENGTHS,
        prompt_slots=P,
        loss_config=LOSS,
        advantages=rng.normal(0, 1, 8),
        old_logprobs=old,  # 0 past each completion's end, as the sampler returns them
    )


# Jitted once per graphdef: eager op-by-op dispatch of a forward pass is slow on CPU.
_logprobs = jax.jit(completion_logprobs, static_argnums=(0, 4))


@functools.partial(jax.jit, static_argnums=0)
def _plain_forward(graphdef, params, tokens, valid):
    model = nnx.merge(graphdef, params)
    return model(tokens, positions_from_mask(valid), causal_mask(valid))[0]


@functools.partial(jax.jit, static_argnums=0)
def _grpo_metrics_and_grad(graphdef, params, batch):
    """The GRPO loss, metrics and gradient of a batch, computed directly (no `train_step`)."""

    def loss_fn(p):
        logprobs, entropy = completion_logprobs(graphdef, p, batch.tokens, batch.valid, C)
        loss, metrics = grpo.policy_loss(
            logprobs, batch.old_logprobs, batch.advantages, batch.weights, LOSS
        )
        return loss, dict(metrics, loss=loss, entropy=jnp.sum(entropy * batch.weights))

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return metrics, grads


def _nll(graphdef, params, batch):
    logprobs, _ = _logprobs(graphdef, params, batch.tokens, batch.valid, C)
    return -float(jnp.sum(logprobs * batch.weights))


def _state(params, optimizer):
    """A fresh single-device state, committed to device 0 like the step's outputs (a step fed
    its own output then reuses the compiled executable instead of compiling a second one)."""
    state = TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))
    return jax.device_put(state, jax.devices()[0])


@functools.cache
def _jitted(graphdef, optimizer, mode="grpo", micro_batches=1):
    return jax.jit(
        functools.partial(
            train_step,
            graphdef,
            optimizer=optimizer,
            loss_config=LOSS,
            mode=mode,
            micro_batches=micro_batches,
        )
    )


def _host(tree):
    return jax.tree.map(np.asarray, tree)


def _assert_same_update(new, reference, old, rel=1e-4):
    """Leafwise: new - old equals reference - old, relative to the leaf's largest change."""
    for a, b, o in zip(*(jax.tree.leaves(_host(t)) for t in (new, reference, old)), strict=True):
        scale = np.abs(b - o).max()
        np.testing.assert_allclose(a - o, b - o, rtol=rel, atol=rel * scale)


def _assert_same_metrics(metrics, reference):
    assert metrics.keys() == reference.keys()
    for name in reference:
        assert float(metrics[name]) == pytest.approx(float(reference[name]), rel=1e-5, abs=1e-7)


def test_make_batch_lays_out_left_padded_prompts_then_right_padded_completions():
    completions = np.arange(1, 1 + 3 * 4).reshape(3, 4) + 100
    batch = make_batch(
        [[7, 8], [9, 10, 11]],
        [1, 0, 1],
        completions,
        [4, 2, 0],
        prompt_slots=3,
        loss_config=grpo.LossConfig(),
        pad_id=0,
    )
    np.testing.assert_array_equal(
        batch.tokens,
        [
            [9, 10, 11, 101, 102, 103, 104],
            [0, 7, 8, 105, 106, 0, 0],
            [9, 10, 11, 0, 0, 0, 0],
        ],
    )
    np.testing.assert_array_equal(batch.valid, batch.tokens != 0)
    # token_mean over the 6 completion tokens; the empty completion gets no weight.
    np.testing.assert_allclose(batch.weights, (batch.tokens[:, 3:] != 0) / 6, rtol=1e-6)
    # SFT batches: zero advantages and old log-probs, with the right shapes and dtypes.
    assert batch.advantages.shape == (3, 4) and not batch.advantages.any()
    assert batch.old_logprobs.shape == (3, 4) and not batch.old_logprobs.any()
    assert batch.tokens.dtype == np.int32 and batch.weights.dtype == np.float32
    with pytest.raises(CoreaError, match="prompt of 3 tokens exceeds 2 slots"):
        make_batch([[1, 2, 3]], [0], completions[:1], [4], prompt_slots=2, loss_config=LOSS)


def test_make_batch_takes_per_row_or_per_token_advantages():
    completions = np.ones((2, 3), np.int32)
    lay = lambda adv: make_batch([[5]], [0, 0], completions, [3, 2], prompt_slots=1,  # noqa: E731
                                 loss_config=LOSS, advantages=adv).advantages  # fmt: skip
    np.testing.assert_array_equal(lay([1.0, -2.0]), [[1, 1, 1], [-2, -2, -2]])
    per_token = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(lay(per_token), per_token)
    with pytest.raises(CoreaError, match=r"advantages of shape \(3,\): expected \[2\] or \[2, 3\]"):
        lay([1.0, 2.0, 3.0])


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_completion_logprobs_equal_a_plain_full_forward(family):
    model = _scaled(CausalLM(CONFIGS[family], rngs=nnx.Rngs(2)))
    batch = make_batch(
        PROMPTS, PROMPT_INDEX, _completions(8, 3), LENGTHS, prompt_slots=P, loss_config=LOSS
    )
    graphdef, params = nnx.split(model)
    logprobs, entropy = _logprobs(graphdef, params, batch.tokens, batch.valid, C)
    logits = _plain_forward(graphdef, params, batch.tokens, batch.valid)
    full = np.asarray(jax.nn.log_softmax(logits), np.float64)
    # Slot P - 1 + j predicts completion token j.
    targets = batch.tokens[:, P:]
    want = np.take_along_axis(full[:, P - 1 : -1], targets[..., None], -1)[..., 0]
    want_entropy = -(np.exp(full) * full).sum(-1)[:, P - 1 : -1]
    mask = batch.valid[:, P:]
    np.testing.assert_allclose(np.asarray(logprobs)[mask], want[mask], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(entropy)[mask], want_entropy[mask], rtol=1e-5)
    assert np.asarray(logprobs)[mask].std() > 0.5  # a scaled model: far from uniform


def test_one_grpo_step_moves_every_parameter_along_the_gradient(model, batch):
    graphdef, params = nnx.split(model)
    new, metrics = _jitted(graphdef, SGD)(_state(params, SGD), batch)
    assert int(new.updates) == 1 and float(metrics["finite"]) == 1.0
    want, grads = _grpo_metrics_and_grad(graphdef, params, batch)
    for (path, old), updated in zip(
        jax.tree.leaves_with_path(_host(params)), jax.tree.leaves(_host(new.params)), strict=True
    ):
        assert np.abs(updated - old).max() > 0, f"{jax.tree_util.keystr(path)} did not change"
    # SGD(lr=1), first step: new = old - grad of the loss under the parameters before the step.
    _assert_same_update(new.params, jax.tree.map(jnp.subtract, params, grads), params)
    for name, value in dict(want, grad_norm=optax.tree.norm(grads)).items():
        assert float(metrics[name]) == pytest.approx(float(value), rel=1e-5, abs=1e-7), name
    assert 0 < float(metrics["clip_fraction"]) < 0.5  # the batch exercises both branches


@pytest.mark.parametrize("micro_batches", [2, 4])
def test_micro_batched_step_equals_full_batch_step(model, batch, micro_batches):
    graphdef, params = nnx.split(model)
    full, full_metrics = _jitted(graphdef, SGD)(_state(params, SGD), batch)
    micro, micro_metrics = _jitted(graphdef, SGD, micro_batches=micro_batches)(
        _state(params, SGD), batch
    )
    _assert_same_update(micro.params, full.params, params)
    _assert_same_update(micro.opt_state, full.opt_state, _state(params, SGD).opt_state)
    _assert_same_metrics(micro_metrics, full_metrics)


def test_rows_must_split_evenly_into_micro_batches(model, batch):
    graphdef, params = nnx.split(model)
    with pytest.raises(CoreaError, match="8 rows does not split into 3 micro-batches"):
        train_step(
            graphdef, _state(params, SGD), batch, optimizer=SGD, loss_config=LOSS, micro_batches=3
        )


# 2x2x2 also accumulates over 2 micro-batches of rows sharded 4 ways (one compile per case).
@pytest.mark.parametrize("mesh_shape, micro_batches", [((2, 2, 2), 2), ((1, 8, 1), 1)])
def test_step_on_an_8_device_mesh_equals_the_single_device_step(
    checkpoint, model, batch, mesh_shape, micro_batches
):
    graphdef, params = nnx.split(model)
    want, want_metrics = _jitted(graphdef, SGD)(_state(params, SGD), batch)

    mesh = make_mesh(mesh_shape)
    sharded_model = load_model(checkpoint, mesh=mesh)
    sharded_graphdef, sharded_params = nnx.split(sharded_model)
    shardings = param_shardings(sharded_model, mesh)
    assert [x.sharding for x in jax.tree.leaves(sharded_params)] == jax.tree.leaves(shardings)
    assert any(
        len(s.device_set) == 8 and not s.is_fully_replicated for s in jax.tree.leaves(shardings)
    )
    state, state_shardings = init_train_state(SGD, sharded_params, shardings, mesh)
    # The momentum trace is sharded like the parameters it mirrors, not put on one device.
    trace = state.opt_state.inner_state[0].trace
    assert [x.sharding for x in jax.tree.leaves(trace)] == jax.tree.leaves(shardings)
    assert jax.tree.leaves(state_shardings) == [x.sharding for x in jax.tree.leaves(state)]
    batch_sharding = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    step = jit_train_step(
        sharded_graphdef,
        state_shardings,
        batch_sharding,
        mesh,
        optimizer=SGD,
        loss_config=LOSS,
        micro_batches=micro_batches,
    )
    new, metrics = step(state, batch)  # `state` is donated: not used again
    assert [x.sharding for x in jax.tree.leaves(new.params)] == jax.tree.leaves(shardings)
    assert all(m.sharding.is_fully_replicated for m in metrics.values())
    assert int(new.updates) == 1
    _assert_same_update(new.params, want.params, params)
    _assert_same_metrics(metrics, want_metrics)


def test_micro_batch_m_holds_rows_m_m_plus_M_and_so_on(batch):
    micro = split_micro_batches(jax.tree.map(jnp.asarray, batch), 4)
    for name, x in batch._asdict().items():
        if x is not None:
            np.testing.assert_array_equal(
                getattr(micro, name), np.stack([x[m::4] for m in range(4)])
            )


def test_micro_batching_a_sharded_batch_adds_no_flops_per_device(checkpoint, batch):
    """Rows sharded 4 ways (2x2x2 mesh), 8 per device: 4 micro-batches cost what one does.

    XLA's cost analysis counts the scan body once, so body x M is compared with M = 1. What
    really grows with M (the gradient accumulator's adds) and what is counted M times here (the
    optimizer, outside the loop) make 1.05x on this 1-layer model. Split contiguously, each
    micro-batch was the rows of one device, and the ratio was 2.1x."""
    mesh = make_mesh((2, 2, 2))
    sharded_model = load_model(checkpoint, mesh=mesh)
    graphdef, params = nnx.split(sharded_model)
    state, state_shardings = init_train_state(
        SGD, params, param_shardings(sharded_model, mesh), mesh
    )
    rows32 = jax.tree.map(lambda x: np.concatenate([x] * 4), batch)  # R = 32
    batch_sharding = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    flops = {}
    for micro_batches in (1, 4):
        step = jit_train_step(
            graphdef, state_shardings, batch_sharding, mesh, optimizer=SGD, loss_config=LOSS,
            micro_batches=micro_batches,
        )  # fmt: skip
        cost = step.lower(state, rows32).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        flops[micro_batches] = cost["flops"] * micro_batches
    assert flops[4] < 1.1 * flops[1], flops


@pytest.mark.parametrize("cause", ["nan_advantage", "huge_learning_rate"])
def test_a_non_finite_step_keeps_parameters_and_optimizer_state(model, batch, cause):
    graphdef, params = nnx.split(model)
    step = _jitted(graphdef, SGD)
    # Move off the initial state first, so "unchanged" is not "still at zero".
    state, _ = step(_state(params, SGD), batch)
    if cause == "nan_advantage":
        batch = batch._replace(advantages=batch.advantages.copy())
        batch.advantages[3] = np.nan
    else:  # loss and gradients stay finite; the update overflows float32
        inf = jax.device_put(np.float32(np.inf), jax.devices()[0])
        hyper = dict(state.opt_state.hyperparams, learning_rate=inf)
        state = state._replace(opt_state=state.opt_state._replace(hyperparams=hyper))
    new, metrics = step(state, batch)
    assert float(metrics["finite"]) == 0.0
    assert int(new.updates) == int(state.updates) == 1
    for a, b in zip(jax.tree.leaves(_host(new)), jax.tree.leaves(_host(state)), strict=True):
        np.testing.assert_array_equal(a, b)
    if cause == "huge_learning_rate":
        assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["grad_norm"]))


def test_sft_steps_lower_the_batch_nll(model):
    graphdef, params = nnx.split(model)
    batch = make_batch(
        PROMPTS, PROMPT_INDEX, _completions(8, 4), LENGTHS, prompt_slots=P, loss_config=LOSS
    )
    assert not batch.advantages.any()  # SFT ignores advantages and old log-probs
    lr = 1e-2
    optimizer = make_optimizer(OptimConfig(learning_rate=lr, warmup_steps=0))
    step = _jitted(graphdef, optimizer, mode="sft")
    state = _state(params, optimizer)
    first_nll = _nll(graphdef, params, batch)
    nlls = []
    for i in range(4):
        state, metrics = step(state, batch)
        assert float(metrics["finite"]) == 1.0 and int(state.updates) == i + 1
        nlls.append(float(metrics["nll"]))
        if i == 0:  # Adam's first step moves every parameter, by at most lr
            for (path, old), updated in zip(
                jax.tree.leaves_with_path(_host(params)),
                jax.tree.leaves(_host(state.params)),
                strict=True,
            ):
                change = np.abs(updated - old).max()
                assert 0 < change <= lr * (1 + 1e-3), jax.tree_util.keystr(path)
    assert nlls[0] == pytest.approx(first_nll, rel=1e-5)
    assert all(b < a for a, b in zip(nlls, nlls[1:], strict=False)), nlls
    assert _nll(graphdef, state.params, batch) < first_nll - 1.0


def _learning_rates(config, steps, total_steps=1000):
    """Adam under a constant unit gradient moves a scalar by exactly lr_t per step."""
    optimizer = make_optimizer(config, total_steps)
    params = {"w": jnp.zeros(())}
    state = optimizer.init(params)
    rates = []
    for _ in range(steps):
        updates, state = optimizer.update({"w": jnp.ones(())}, state, params)
        rates.append(-float(updates["w"]))
    return np.array(rates)


def test_optimizer_schedules():
    # The paper runs' default: a 10-step linear warm-up, then constant.
    np.testing.assert_allclose(_learning_rates(OptimConfig(learning_rate=0.1), 11)[[0, 5, 10]],
                               [0, 0.05, 0.1], rtol=1e-4, atol=1e-9)  # fmt: skip
    # rtol 1e-4: Adam's eps and float32 bias corrections blur the rates in the 6th digit.
    constant = OptimConfig(learning_rate=0.1, warmup_steps=0)
    np.testing.assert_allclose(_learning_rates(constant, 3), 0.1, rtol=1e-4)
    warm = _learning_rates(OptimConfig(learning_rate=0.1, warmup_steps=4), 6)
    np.testing.assert_allclose(warm, [0, 0.025, 0.05, 0.075, 0.1, 0.1], rtol=1e-4, atol=1e-9)
    cosine = _learning_rates(
        OptimConfig(learning_rate=0.1, warmup_steps=2, schedule="cosine"), 7, total_steps=6
    )
    # Warm-up 0 -> 0.1 over 2 steps, then half a cosine down to 0 over the remaining 4.
    decay = 0.05 * (1 + np.cos(np.pi * np.arange(5) / 4))
    np.testing.assert_allclose(cosine, [0, 0.05, *decay], rtol=1e-4, atol=1e-7)
    with pytest.raises(CoreaError, match="optim.schedule 'linear'"):
        OptimConfig(schedule="linear")
    # The cosine's length is the run's train.steps, not a setting of its own.
    assert "total_steps" not in {f.name for f in dataclasses.fields(OptimConfig)}
    with pytest.raises(CoreaError, match="optim.warmup_steps=6: the cosine schedule"):
        make_optimizer(OptimConfig(warmup_steps=6, schedule="cosine"), total_steps=6)

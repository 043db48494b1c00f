"""The GRPO objective: clipped loss and gradient vs NumPy / PyTorch references, hand values."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corea_jax.errors import CoreaError
from corea_jax.rl import grpo

EPS_LOW, EPS_HIGH = 0.1, 0.3  # asymmetric on purpose: each bound is exercised by some token

# Hand-made rows: log ratios (logp - old_logp) chosen to land on either side of each clip
# bound, with positive and negative advantages. Bounds: ratio in [0.9, 1.3].
#   row 0, A = +1:   0.5 (r 1.65 > 1.3: clipped), -0.5 (r 0.61, A > 0: unclipped),
#                    0.2 (r 1.22: inside 1.3, would be clipped by a symmetric 0.1), 0.0
#   row 1, A = -1:   0.5 (r 1.65, A < 0: unclipped), -0.5 (r 0.61 < 0.9: clipped),
#                   -0.15 (r 0.86 < 0.9: clipped, inside a symmetric 0.3), 0.05
#   row 2, A = 0.5:  0.4 (clipped), -0.05, then two padding slots (masked)
#   row 3, A = -2:  -0.3 (clipped), 0.3 (r 1.35, A < 0: unclipped), 0.0, then padding
LOG_RATIO = np.array(
    [
        [0.5, -0.5, 0.2, 0.0],
        [0.5, -0.5, -0.15, 0.05],
        [0.4, -0.05, 9.0, -7.0],  # padding holds junk: it must not matter
        [-0.3, 0.3, 0.0, 3.0],
    ]
)
ADVANTAGES = np.array([1.0, -1.0, 0.5, -2.0])
MASK = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], np.float32)
CLIPPED = np.array([[1, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0]], bool)
OLD = -np.linspace(0.5, 4.0, 16).reshape(4, 4)  # any negative numbers
LOGP = OLD + LOG_RATIO
REF = LOGP + np.array(
    [[0.3, -0.2, 0.0, 0.7], [-0.6, 0.1, 0.4, -0.1], [0.2, -0.3, 5.0, 5.0], [0.05, 0.5, -0.4, 5.0]]
)


def _reference(
    logp, old, adv, mask, aggregation, eps_low, eps_high, beta=0.0, ref=None, max_len=None
):
    """The clipped GRPO objective and its gradient w.r.t. logp, in float64 NumPy.

    Written from the formula, branch by branch: where the clipped term is the smaller one the
    token's ratio is outside the band, so that term is a constant and the gradient is 0.
    """
    logp, old, ref = (None if x is None else np.asarray(x, np.float64) for x in (logp, old, ref))
    ratio = np.exp(logp - old)
    a = np.asarray(adv, np.float64)[:, None]
    unclipped = ratio * a
    clipped = np.clip(ratio, 1 - eps_low, 1 + eps_high) * a
    take_clipped = clipped < unclipped
    per_token = -np.where(take_clipped, clipped, unclipped)
    d_per_token = np.where(take_clipped, 0.0, -a * ratio)
    kl = np.zeros_like(per_token)
    if beta:
        d = ref - logp
        kl = np.exp(d) - d - 1
        per_token = per_token + beta * kl
        d_per_token = d_per_token + beta * (1 - np.exp(d))
    mask = np.asarray(mask, np.float64)
    rows, t = mask.shape
    if aggregation == "token_mean":
        denom = np.full((rows, 1), mask.sum())
    elif aggregation == "sequence_mean":
        denom = mask.sum(axis=1, keepdims=True) * rows
    else:
        denom = np.full((rows, 1), rows * (max_len or t))
    loss = float(np.sum(per_token * mask / denom))
    grad = d_per_token * mask / denom
    metrics = {
        "clip_fraction": float(np.sum(take_clipped * mask / denom)),
        "kl": float(np.sum(kl * mask / denom)),
        "ratio": float(np.sum(ratio * mask / denom)),
    }
    return loss, grad, metrics, take_clipped


_weights = jax.jit(grpo.loss_weights, static_argnums=1)


@functools.partial(jax.jit, static_argnames="config")
def _loss_and_grad(logp, old, adv, weights, ref, config):
    loss_fn = lambda lp: grpo.policy_loss(lp, old, adv, weights, config, ref)  # noqa: E731
    return jax.value_and_grad(loss_fn, has_aux=True)(logp)


def _jax_loss_and_grad(logp, old, adv, mask, config, ref=None):
    as32 = lambda x: None if x is None else np.asarray(x, np.float32)  # noqa: E731
    weights = _weights(as32(mask), config)
    # The loss only reads eps and beta from the config: one compile per beta and shape.
    loss_config = grpo.LossConfig(config.eps_low, config.eps_high, config.beta)
    (loss, metrics), grad = _loss_and_grad(
        as32(logp), as32(old), as32(adv), weights, as32(ref), loss_config
    )
    return float(loss), np.asarray(grad), {k: float(v) for k, v in metrics.items()}


def _random_case(seed, rows=6, t=9):
    rng = np.random.default_rng(seed)
    old = -rng.exponential(2.0, (rows, t))
    logp = old + rng.normal(0.0, 0.3, (rows, t))
    ref = logp + rng.normal(0.0, 0.5, (rows, t))
    adv = rng.normal(0.0, 1.0, rows)
    lengths = rng.integers(1, t + 1, rows)
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
    return logp, old, adv, mask, ref


CASES = {"hand": (LOGP, OLD, ADVANTAGES, MASK, REF), "random": _random_case(0)}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("aggregation", sorted(grpo.AGGREGATIONS))
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_loss_and_gradient_match_numpy_reference(case, aggregation, beta):
    logp, old, adv, mask, ref = CASES[case]
    max_len = 6 if aggregation == "dr_grpo" and case == "hand" else None
    config = grpo.LossConfig(EPS_LOW, EPS_HIGH, beta, aggregation, max_len)
    ref = ref if beta else None
    loss, grad, metrics = _jax_loss_and_grad(logp, old, adv, mask, config, ref)
    want_loss, want_grad, want_metrics, take_clipped = _reference(
        logp, old, adv, mask, aggregation, EPS_LOW, EPS_HIGH, beta, ref, max_len
    )
    assert loss == pytest.approx(want_loss, rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)
    for name, value in want_metrics.items():
        assert metrics[name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    if case == "hand":
        np.testing.assert_array_equal(take_clipped & (MASK > 0), CLIPPED)
    # Clipped tokens and padding carry no gradient from the policy term.
    if not beta:
        assert np.all(grad[take_clipped | (mask == 0)] == 0)
        assert np.all(grad[~take_clipped & (mask > 0)] != 0)


def _torch_grpo_loss(
    torch, logp, old, adv, mask, aggregation, eps_low, eps_high, beta, ref, max_len
):
    """The loss as commonly written in PyTorch GRPO trainers (max of the negated terms)."""
    lp = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    old, adv, mask = (torch.tensor(x, dtype=torch.float64) for x in (old, adv, mask))
    ratio = torch.exp(lp - old)
    a = adv.unsqueeze(1)
    per_token = torch.max(-a * ratio, -a * torch.clamp(ratio, 1 - eps_low, 1 + eps_high))
    if beta:
        ref = torch.tensor(ref, dtype=torch.float64)
        per_token = per_token + beta * (torch.exp(ref - lp) - (ref - lp) - 1)
    if aggregation == "token_mean":
        loss = (per_token * mask).sum() / mask.sum()
    elif aggregation == "sequence_mean":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1)).mean()
    else:
        loss = (per_token * mask).sum() / (mask.shape[0] * (max_len or mask.shape[1]))
    loss.backward()
    return loss.item(), lp.grad.numpy()


@pytest.mark.parametrize("aggregation", sorted(grpo.AGGREGATIONS))
def test_loss_and_gradient_match_pytorch_autograd(aggregation):
    torch = pytest.importorskip("torch", reason="PyTorch is installed on Python 3.11 only")
    for logp, old, adv, mask, ref in [CASES["hand"], _random_case(1, rows=16, t=33)]:
        for beta in (0.0, 0.04):
            config = grpo.LossConfig(EPS_LOW, EPS_HIGH, beta, aggregation)
            loss, grad, _ = _jax_loss_and_grad(logp, old, adv, mask, config, ref if beta else None)
            want_loss, want_grad = _torch_grpo_loss(
                torch, logp, old, adv, mask, aggregation, EPS_LOW, EPS_HIGH, beta, ref, None
            )
            assert loss == pytest.approx(want_loss, rel=1e-5, abs=1e-7)
            np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)


# Ratio 1 everywhere (logp == old), so each token's loss is -A of its row:
#   row 0: A = 1,  3 tokens -> per-token loss -1, -1, -1
#   row 1: A = -2, 1 token  -> per-token loss 2
HAND_MASK = np.array([[1, 1, 1], [1, 0, 0]], np.float32)
HAND_ADV = np.array([1.0, -2.0])


@pytest.mark.parametrize(
    "aggregation, max_len, expected",
    [
        ("token_mean", None, (-1 - 1 - 1 + 2) / 4),  # all 4 tokens equally: -1/4
        ("sequence_mean", None, (-3 / 3 + 2 / 1) / 2),  # row means -1 and 2, then mean: 1/2
        ("dr_grpo", None, (-3 + 2) / (2 * 3)),  # sum / (R * T) = -1/6
        ("dr_grpo", 5, (-3 + 2) / (2 * 5)),  # sum / (R * max_completion_len) = -1/10
    ],
)
def test_aggregations_give_hand_computed_values(aggregation, max_len, expected):
    config = grpo.LossConfig(aggregation=aggregation, max_completion_len=max_len)
    logp = jnp.full((2, 3), -1.5)
    weights = grpo.loss_weights(jnp.asarray(HAND_MASK), config)
    loss, metrics = grpo.policy_loss(logp, logp, jnp.asarray(HAND_ADV), weights, config)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(metrics["pg_loss"]) == float(loss)
    assert float(metrics["clip_fraction"]) == 0.0
    assert float(metrics["kl"]) == 0.0
    # Mean ratio is 1 wherever the weights sum to 1 (token_mean, sequence_mean).
    assert float(metrics["ratio"]) == pytest.approx(float(weights.sum()), rel=1e-6)


def test_clipping_and_k3_hand_values():
    # Token 0: A = +1, ratio e^0.5 = 1.6487 > 1 + 0.2 -> loss -1.2, no gradient.
    # Token 1: A = -1, ratio e^-0.5 = 0.6065 < 1 - 0.2 -> min(-0.6065, -0.8) = -0.8 -> loss 0.8.
    # Token 2: A = +1, ratio e^0.1 = 1.1052 inside -> loss -1.1052, d/dlogp = -1.1052.
    # k3 on token 2 with ref - logp = ln 2: 2 - ln 2 - 1 = 0.30685.
    config = grpo.LossConfig(0.2, 0.2, beta=0.5)
    old = jnp.zeros((3, 1))
    logp = jnp.array([[0.5], [-0.5], [0.1]])
    ref = logp + jnp.array([[0.0], [0.0], [math.log(2.0)]])
    adv = jnp.array([1.0, -1.0, 1.0])
    weights = jnp.ones((3, 1))  # a plain sum over the three tokens

    def loss_fn(lp):
        return grpo.policy_loss(lp, old, adv, weights, config, ref)

    (loss, metrics), grad = jax.value_and_grad(loss_fn, has_aux=True)(logp)
    k3 = 2 - math.log(2) - 1
    r2 = math.exp(0.1)
    assert float(metrics["pg_loss"]) == pytest.approx(-1.2 + 0.8 - r2, rel=1e-6)
    assert float(metrics["kl"]) == pytest.approx(k3, rel=1e-6)
    assert float(loss) == pytest.approx(-1.2 + 0.8 - r2 + 0.5 * k3, rel=1e-6)
    assert float(metrics["clip_fraction"]) == 2.0
    # d k3 / d logp = 1 - exp(ref - logp): 0 on tokens 0 and 1, 1 - 2 = -1 on token 2.
    np.testing.assert_allclose(np.asarray(grad)[:, 0], [0.0, 0.0, -r2 + 0.5 * -1.0], rtol=1e-6)


@pytest.mark.parametrize("aggregation", sorted(grpo.AGGREGATIONS))
def test_loss_weights_are_zero_off_the_mask_and_normalised(aggregation):
    _, _, _, mask, _ = _random_case(2, rows=5, t=7)
    mask[3] = 0  # an empty completion
    weights = np.asarray(
        grpo.loss_weights(jnp.asarray(mask), grpo.LossConfig(aggregation=aggregation))
    )
    assert np.all(weights[mask == 0] == 0) and np.all(weights[mask > 0] > 0)
    if aggregation == "token_mean":
        assert weights.sum() == pytest.approx(1.0, rel=1e-6)
        assert np.ptp(weights[mask > 0]) == 0  # every token counts the same
    elif aggregation == "sequence_mean":
        np.testing.assert_allclose(weights.sum(1), np.where(mask.sum(1) > 0, 1 / 5, 0), rtol=1e-6)
    else:
        assert np.all(weights[mask > 0] == np.float32(1 / (5 * 7)))
    empty = grpo.loss_weights(jnp.zeros((2, 3)), grpo.LossConfig(aggregation=aggregation))
    assert np.all(np.asarray(empty) == 0)  # no 0/0


@pytest.mark.parametrize("aggregation", sorted(grpo.AGGREGATIONS))
def test_losses_of_row_splits_add_up_to_the_full_batch_loss(aggregation):
    logp, old, adv, mask, ref = (jnp.asarray(x, jnp.float32) for x in _random_case(3, 8, 5))
    config = grpo.LossConfig(EPS_LOW, EPS_HIGH, 0.05, aggregation)
    weights = grpo.loss_weights(mask, config)
    full, full_metrics = grpo.policy_loss(logp, old, adv, weights, config, ref)
    parts = [
        grpo.policy_loss(logp[s], old[s], adv[s], weights[s], config, ref[s])
        for s in (slice(0, 4), slice(4, 8))
    ]
    assert float(sum(p[0] for p in parts)) == pytest.approx(float(full), rel=1e-5)
    for name, value in full_metrics.items():
        assert float(sum(p[1][name] for p in parts)) == pytest.approx(float(value), rel=1e-5)


def test_token_logprobs_and_entropy():
    rng = np.random.default_rng(4)
    logits = jnp.asarray(rng.normal(0, 3, (2, 3, 11)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 11, (2, 3)))
    want = np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), targets[..., None], -1)
    np.testing.assert_allclose(grpo.token_logprobs(logits, targets), want[..., 0], rtol=1e-6)
    # Shift invariance: adding a constant to every logit changes nothing.
    np.testing.assert_allclose(
        grpo.token_logprobs(logits + 100.0, targets), want[..., 0], rtol=1e-4, atol=1e-5
    )
    # Entropy: log V for uniform logits, ~0 for a near one-hot, and H = -sum p log p in general.
    assert float(grpo.token_entropy(jnp.zeros(11))) == pytest.approx(math.log(11), rel=1e-6)
    assert float(grpo.token_entropy(jnp.array([50.0, 0.0, 0.0]))) == pytest.approx(0.0, abs=1e-18)
    p = np.asarray(jax.nn.softmax(logits), np.float64)
    np.testing.assert_allclose(grpo.token_entropy(logits), -(p * np.log(p)).sum(-1), rtol=1e-5)


def test_config_errors_are_loud():
    with pytest.raises(CoreaError, match="aggregation 'mean'"):
        grpo.LossConfig(aggregation="mean")
    with pytest.raises(CoreaError, match="must be >= 0"):
        grpo.LossConfig(eps_low=-0.1)
    with pytest.raises(CoreaError, match="must be >= 0"):
        grpo.LossConfig(beta=-1.0)
    config = grpo.LossConfig(beta=0.1)
    x = jnp.zeros((1, 2))
    with pytest.raises(CoreaError, match="needs reference log-probs"):
        grpo.policy_loss(x, x, jnp.zeros(1), x, config)


def test_per_token_advantages_hand_values_and_the_per_row_broadcast():
    # ratio 1 (logp = old), token mean over 2 tokens: loss = mean(-A) = 0.5 * (-1 + 2) and
    # d loss / d logp = -A * ratio * w = [-0.5, 1].
    logp = jnp.array([[-1.0, -2.0]])
    weights = jnp.full((1, 2), 0.5)
    fn = lambda lp, adv: grpo.policy_loss(lp, logp, adv, weights, grpo.LossConfig())[0]  # noqa: E731
    loss, grad = jax.value_and_grad(fn)(logp, jnp.array([[1.0, -2.0]]))
    assert float(loss) == pytest.approx(0.5)
    np.testing.assert_allclose(grad, [[-0.5, 1.0]])
    # [R] is the broadcast of one advantage over the row.
    row, row_grad = jax.value_and_grad(fn)(logp, jnp.array([0.7]))
    full, full_grad = jax.value_and_grad(fn)(logp, jnp.array([[0.7, 0.7]]))
    assert float(row) == float(full)
    np.testing.assert_array_equal(row_grad, full_grad)

"""Sampling kernels: inverse-CDF draws follow softmax exactly, argmax ties, processed log-probs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from corea_jax.sampling import Greedy, Temperature, TopK, TopP
from corea_jax.sampling.methods import first_argmax, inverse_cdf_sample, token_logprobs


@pytest.mark.parametrize("vocab", [5, 300, 4099])
def test_inverse_cdf_on_a_uniform_grid_reproduces_softmax(vocab):
    # N evenly spaced uniforms hit token t exactly round(N * p_t) times, up to one per boundary:
    # a deterministic check of the distribution, with no sampling noise to tolerate.
    rng = np.random.default_rng(vocab)
    logits = rng.normal(0, 2, vocab).astype(np.float32)
    logits[rng.choice(vocab, vocab // 3, replace=False)] = -np.inf  # masked tokens
    n = 20_000
    uniforms = (np.arange(n) + 0.5) / n
    tokens = inverse_cdf_sample(jnp.tile(jnp.asarray(logits), (n, 1)), jnp.asarray(uniforms))
    counts = np.bincount(np.asarray(tokens), minlength=vocab)
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits)))
    assert counts.sum() == n and np.all(counts[np.isinf(logits)] == 0)
    np.testing.assert_allclose(counts / n, probs, atol=2.5 / n)


def test_inverse_cdf_extremes_never_pick_a_masked_token():
    logits = jnp.asarray([[-jnp.inf, 1.0, -jnp.inf, 2.0] + [-jnp.inf] * 400] * 3)
    tokens = inverse_cdf_sample(logits, jnp.asarray([0.0, 0.5, 1.0 - 2.0**-24]))
    assert np.asarray(tokens).tolist() == [1, 3, 3]


def test_first_argmax_breaks_ties_to_the_lowest_index_like_argmax():
    x = jnp.asarray([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-jnp.inf, -1.0, -jnp.inf, -5.0]])
    assert np.asarray(first_argmax(x)).tolist() == [1, 0, 1]
    y = jax.random.normal(jax.random.key(0), (16, 1000)).round(1)  # many ties
    np.testing.assert_array_equal(first_argmax(y), jnp.argmax(y, axis=-1))


@pytest.mark.parametrize(
    "method", [Greedy(), Temperature(0.7), Temperature(1.0), TopK(1.3, k=5), TopP(0.9, p=0.8)]
)
def test_draw_returns_tokens_and_processed_logprobs(method):
    logits = jax.random.normal(jax.random.key(1), (8, 50)) * 3
    keys = jax.random.split(jax.random.key(2), 8)
    tokens, processed_lp = jax.jit(method.draw)(logits, keys)
    assert tokens.dtype == jnp.int32 and tokens.shape == (8,)
    expected = token_logprobs(jax.nn.log_softmax(method.processed_logits(logits)), tokens)
    np.testing.assert_allclose(processed_lp, expected, atol=1e-5)
    assert np.all(np.isfinite(processed_lp))  # drawn from inside the processed support
    if isinstance(method, Greedy):
        np.testing.assert_array_equal(tokens, jnp.argmax(logits, -1))


def test_token_logprobs_takes_any_leading_shape():
    # One function for the sampler's [B, V] decode step and GRPO's [B, C, V] completions.
    logits = jax.random.normal(jax.random.key(3), (4, 6, 50)) * 3
    targets = jax.random.randint(jax.random.key(4), (4, 6), 0, 50)
    full = token_logprobs(logits, targets)
    assert full.shape == (4, 6)
    for c in range(6):
        per_step = token_logprobs(logits[:, c], targets[:, c])
        np.testing.assert_allclose(full[:, c], per_step, rtol=1e-6, atol=1e-6)
    want = np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), targets[..., None], -1)
    np.testing.assert_allclose(full, want[..., 0], rtol=1e-6, atol=1e-6)

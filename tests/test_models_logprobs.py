"""Chunked token log-probs: the unchunked values and gradients, never [R, C, V] logits.

Tolerance, float32 on CPU: log-probs and entropies within 1e-5 absolute; parameter gradients
within 1e-5 of each gradient's largest entry.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tiny_models import TINY

from corea_jax.models import CausalLM, causal_mask, positions_from_mask
from corea_jax.models.logprobs import chunked_token_logprobs
from corea_jax.sampling.methods import token_logprobs

ATOL = 1e-5
GRAD_RTOL = 1e-5
R, T, P = 3, 20, 9  # rows, slots, prompt slots: C = T - P = 11 completion slots


def _batch(vocab: int):
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(3, vocab, size=(R, T)), jnp.int32)
    valid = np.ones((R, T), bool)
    valid[1, :4] = False
    valid[2, T - 3 :] = False
    return tokens, jnp.asarray(valid)


def _unchunked(model, hidden, targets):
    """Today's update: `rl.grpo.token_logprobs` (= the sampler's) and `rl.grpo.token_entropy`."""
    logits = model.logits(hidden)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return token_logprobs(logits, targets), -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def _completion(params, graphdef, tokens, valid, chunk):
    """The update's use: hidden states at P-1 .. T-2 predict the completion tokens."""
    model = nnx.merge(graphdef, params)
    hidden, _ = model.hidden_states(tokens, positions_from_mask(valid), causal_mask(valid))
    hidden, targets = hidden[:, P - 1 : -1], tokens[:, P:]
    if chunk is None:
        return _unchunked(model, hidden, targets)
    return chunked_token_logprobs(model, hidden, targets, chunk)


def _loss(params, graphdef, tokens, valid, chunk):
    logprobs, entropy = _completion(params, graphdef, tokens, valid, chunk)
    weights = valid[:, P:] * jnp.linspace(0.5, 1.5, T - P)
    return -jnp.sum(logprobs * weights) + 0.1 * jnp.sum(entropy * weights)


@pytest.mark.parametrize("family", sorted(TINY))  # tied (qwen2) and untied (llama) LM head
@pytest.mark.parametrize("chunk", [1, 4, 11, 64])  # 4 does not divide C = 11; 64 > C
def test_chunked_logprobs_match_unchunked_values_and_gradients(family, chunk):
    graphdef, params = nnx.split(CausalLM(TINY[family], rngs=nnx.Rngs(0)))
    tokens, valid = _batch(TINY[family].vocab_size)
    want = _completion(params, graphdef, tokens, valid, None)
    got = _completion(params, graphdef, tokens, valid, chunk)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape == (R, T - P) and g.dtype == jnp.float32
        np.testing.assert_allclose(g, w, atol=ATOL)

    grad = jax.jit(jax.grad(_loss), static_argnums=(1, 4))
    want_grads = grad(params, graphdef, tokens, valid, None)
    got_grads = grad(params, graphdef, tokens, valid, chunk)
    for (path, g), w in zip(
        jax.tree_util.tree_leaves_with_path(got_grads), jax.tree.leaves(want_grads), strict=True
    ):
        np.testing.assert_allclose(
            g, w, atol=GRAD_RTOL * float(jnp.max(jnp.abs(w))), err_msg=str(path)
        )


def test_chunk_zero_is_the_unchunked_computation_bit_for_bit():
    graphdef, params = nnx.split(CausalLM(TINY["qwen2"], rngs=nnx.Rngs(0)))
    tokens, valid = _batch(TINY["qwen2"].vocab_size)
    want = _completion(params, graphdef, tokens, valid, None)
    got = _completion(params, graphdef, tokens, valid, 0)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def _avals(jaxpr):
    """Every intermediate's abstract value, sub-jaxprs (map, checkpoint, jit) included."""
    for eqn in jaxpr.eqns:
        yield from (v.aval for v in eqn.outvars)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _avals(inner)


def test_gradient_never_holds_all_completion_logits():
    cfg = TINY["llama"]
    graphdef, params = nnx.split(CausalLM(cfg, rngs=nnx.Rngs(0)))
    tokens, valid = _batch(cfg.vocab_size)

    def largest_vocab_array(chunk):
        jaxpr = jax.make_jaxpr(jax.grad(_loss), static_argnums=(1, 4))(
            params, graphdef, tokens, valid, chunk
        )
        sizes = [
            a.size
            for a in _avals(jaxpr.jaxpr)
            if len(a.shape) >= 3 and a.shape[-1] == cfg.vocab_size
        ]
        return max(sizes)

    full = R * (T - P) * cfg.vocab_size
    assert largest_vocab_array(None) == full  # the check sees the unchunked logits
    assert largest_vocab_array(4) == R * 4 * cfg.vocab_size

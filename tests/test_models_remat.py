"""Per-layer rematerialisation and scanned layers: the same loss and gradients, less memory kept
for the backward.

Tolerance, float32 on CPU: the loss within 1e-6 relative, each parameter gradient within 1e-5
of its largest entry (remat recomputes the same operations; XLA may fuse them differently).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tiny_models import TINY

from corea_jax.models import CausalLM, init_cache, positions_from_mask
from corea_jax.models.compute import REMAT_POLICIES, ComputeConfig
from corea_jax.models.transformer import causal_mask

GRAD_RTOL = 1e-5


def _rows(vocab: int, r: int = 4, t: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    tokens = jnp.asarray(rng.integers(3, vocab, size=(r, t)), jnp.int32)
    valid = np.ones((r, t), bool)
    valid[1, :5] = False
    valid[2, t - 3 :] = False
    return tokens, jnp.asarray(valid)


def _loss(params, graphdef, tokens, valid, compute):
    model = nnx.merge(graphdef, params)
    logits = model(tokens, positions_from_mask(valid), valid, compute=compute)[0]
    logp = jax.nn.log_softmax(logits[:, :-1])
    picked = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    return -jnp.sum(picked * valid[:, 1:])


_value_and_grad = jax.jit(jax.value_and_grad(_loss), static_argnums=(1, 4))


@pytest.mark.parametrize("attention", ["xla", "dot_product_attention"])
@pytest.mark.parametrize("policy", sorted(REMAT_POLICIES))
def test_remat_gives_the_same_loss_and_gradients(policy, attention):
    graphdef, params = nnx.split(CausalLM(TINY["qwen2"], rngs=nnx.Rngs(0)))
    tokens, valid = _rows(TINY["qwen2"].vocab_size)
    plain = ComputeConfig(attention=attention)
    remat = ComputeConfig(remat=policy, attention=attention)
    want_loss, want = _value_and_grad(params, graphdef, tokens, valid, plain)
    got_loss, got = _value_and_grad(params, graphdef, tokens, valid, remat)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    for (path, g), w in zip(
        jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True
    ):
        np.testing.assert_allclose(
            g, w, atol=GRAD_RTOL * float(jnp.max(jnp.abs(w))), err_msg=str(path)
        )


def test_remat_keeps_fewer_residuals_for_the_backward():
    """Bytes the backward pass holds (the residuals in `jax.vjp`'s closure), 4 layers of
    8 x 128 slots: "full" keeps each layer's input only, "save_dots" the projections too."""
    cfg = dataclasses.replace(TINY["llama"], num_layers=4)
    graphdef, params = nnx.split(CausalLM(cfg, rngs=nnx.Rngs(0)))
    tokens, valid = _rows(cfg.vocab_size, r=8, t=128)

    def residual_bytes(policy):
        _, backward = jax.vjp(
            lambda p: _loss(p, graphdef, tokens, valid, ComputeConfig(remat=policy)), params
        )
        return sum(x.nbytes for x in jax.tree.leaves(backward) if isinstance(x, jax.Array))

    none, dots, full = (residual_bytes(p) for p in ("none", "save_dots", "full"))
    assert full < dots < 0.5 * none
    assert full < 0.2 * none


def test_cached_forward_ignores_remat():
    """The sampler's path (a KV cache) is never rematerialised and never changes."""
    cfg = TINY["llama"]
    model = CausalLM(cfg, rngs=nnx.Rngs(0))
    tokens, valid = _rows(cfg.vocab_size, t=8)
    positions, mask = positions_from_mask(valid), causal_mask(valid)
    mask = jnp.pad(mask, ((0, 0), (0, 0), (0, 4)))  # S = T + 4 cache slots
    cache = init_cache(cfg, tokens.shape[0], 12)
    want = model(tokens, positions, mask, cache, 0)
    got = model(tokens, positions, mask, cache, 0, compute=ComputeConfig(remat="full"))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize(
    "remat, attention", [("none", "xla"), ("full", "xla"), ("save_dots", "dot_product_attention")]
)
def test_scanned_layers_give_the_same_loss_and_gradients(remat, attention):
    """`scan_layers`: one `lax.scan` over stacked layer parameters, same function."""
    graphdef, params = nnx.split(CausalLM(TINY["llama"], rngs=nnx.Rngs(0)))
    tokens, valid = _rows(TINY["llama"].vocab_size)
    plain = ComputeConfig(remat=remat, attention=attention)
    scanned = ComputeConfig(remat=remat, attention=attention, scan_layers=True)
    want_loss, want = _value_and_grad(params, graphdef, tokens, valid, plain)
    got_loss, got = _value_and_grad(params, graphdef, tokens, valid, scanned)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    for (path, g), w in zip(
        jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True
    ):
        np.testing.assert_allclose(
            g, w, atol=GRAD_RTOL * float(jnp.max(jnp.abs(w))), err_msg=str(path)
        )


def test_scanned_layers_on_a_mesh_keep_each_stacked_parameter_sharded():
    """With a mesh, the stacked copies are constrained to the parameters' own FSDP / tensor
    sharding (layer axis unsharded): same loss and gradients as the unrolled layers."""
    from corea_jax.parallel.sharding import make_mesh

    graphdef, params = nnx.split(CausalLM(TINY["llama"], rngs=nnx.Rngs(0)))
    tokens, valid = _rows(TINY["llama"].vocab_size)
    mesh = make_mesh((1, 2, 2), jax.devices()[:4])
    plain = ComputeConfig(remat="full", attention="xla")
    scanned = ComputeConfig(remat="full", attention="xla", scan_layers=True, mesh=mesh)
    want_loss, want = _value_and_grad(params, graphdef, tokens, valid, plain)
    got_loss, got = _value_and_grad(params, graphdef, tokens, valid, scanned)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, atol=GRAD_RTOL * float(jnp.max(jnp.abs(w))))
    # The constraint is in the program: the stacked q_proj kernel [L, D, N*H] over (fsdp, tensor)
    text = (
        jax.jit(_loss, static_argnums=(1, 4))
        .lower(params, graphdef, tokens, valid, scanned)
        .as_text()
    )
    assert "sharding_constraint" in text or "mhlo.sharding" in text

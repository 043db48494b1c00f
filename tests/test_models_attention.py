"""Fused attention for the update: same logits and gradients as the decoder's XLA attention.

Rows carry padding on both sides (a left-padded prompt, then a right-padded completion), the
update's layout. Tolerances, float32 on CPU: logits at real slots within 2e-5 absolute,
parameter gradients within 1e-4 relative to each gradient's largest entry. Splash runs here in
Pallas interpret mode (the kernel's own code, executed by XLA on CPU); on TPU it is checked by
compiling the update's forward and backward ahead of time for a v5e:2x2 topology.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO
from flax import nnx
from tiny_models import TINY

from corea_jax.errors import CoreaError
from corea_jax.models import CausalLM, causal_mask, positions_from_mask
from corea_jax.models.attention import dot_product_attention, splash_attention
from corea_jax.models.compute import ComputeConfig

LOGIT_ATOL = 2e-5
GRAD_RTOL = 1e-4


def _rows(vocab: int, t: int = 20, seed: int = 0):
    """tokens, valid [4, t]: full, left-padded, padded both sides, right-padded."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, vocab, size=(4, t)).astype(np.int32)
    valid = np.ones((4, t), bool)
    valid[1, :7] = False
    valid[2, :3] = False
    valid[2, t - 6 :] = False
    valid[3, t - 4 :] = False
    return jnp.asarray(np.where(valid, tokens, 0)), jnp.asarray(valid)


def _loss(params, graphdef, tokens, valid, compute):
    """Sum of real-slot logits times fixed random weights (every logit gets a gradient)."""
    model = nnx.merge(graphdef, params)
    logits = model(tokens, positions_from_mask(valid), valid, compute=compute)[0]
    weights = jax.random.normal(jax.random.key(1), logits.shape)
    return jnp.sum(jnp.where(valid[..., None], logits * weights, 0.0))


def _assert_grads_close(got, want):
    for (path, g), w in zip(
        jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True
    ):
        scale = float(jnp.max(jnp.abs(w)))
        np.testing.assert_allclose(g, w, atol=GRAD_RTOL * scale, err_msg=str(path))


@pytest.mark.parametrize("family", sorted(TINY))
def test_valid_mask_with_default_compute_is_the_causal_mask_path_bit_for_bit(family):
    model = CausalLM(TINY[family], rngs=nnx.Rngs(0))
    tokens, valid = _rows(TINY[family].vocab_size)
    positions = positions_from_mask(valid)
    want = model(tokens, positions, causal_mask(valid))[0]
    for compute in (None, ComputeConfig(), ComputeConfig(attention="xla")):
        got = model(tokens, positions, valid, compute=compute)[0]
        np.testing.assert_array_equal(got, want)


def test_auto_attention_resolves_by_platform():
    assert ComputeConfig().attention_name() == "xla"  # this CPU
    assert ComputeConfig().attention_fn() is None
    assert ComputeConfig(attention="splash").attention_name() == "splash"
    for field, value in [("attention", "flash"), ("remat", "dots")]:
        with pytest.raises(CoreaError, match=field):
            ComputeConfig(**{field: value})


@pytest.mark.parametrize("family", sorted(TINY))  # GQA 4:1 (qwen2) and 2:1 (llama)
def test_dot_product_attention_matches_xla_logits_and_gradients(family):
    model = CausalLM(TINY[family], rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    tokens, valid = _rows(TINY[family].vocab_size)
    positions = positions_from_mask(valid)
    fused = ComputeConfig(attention="dot_product_attention")
    want = model(tokens, positions, valid)[0]
    got = model(tokens, positions, valid, compute=fused)[0]
    real = valid[..., None]
    np.testing.assert_allclose(jnp.where(real, got, 0), jnp.where(real, want, 0), atol=LOGIT_ATOL)
    assert bool(jnp.all(jnp.isfinite(got)))  # padding slots too: 0 x NaN would poison a loss

    grad = jax.jit(jax.grad(_loss), static_argnums=(1, 4))
    _assert_grads_close(
        grad(params, graphdef, tokens, valid, fused),
        grad(params, graphdef, tokens, valid, ComputeConfig()),
    )


def test_padding_tokens_change_no_logits_with_dot_product_attention():
    model = CausalLM(TINY["llama"], rngs=nnx.Rngs(0))
    tokens, valid = _rows(TINY["llama"].vocab_size)
    other = jnp.where(valid, tokens, 77)
    compute = ComputeConfig(attention="dot_product_attention")
    forward = lambda x: model(x, positions_from_mask(valid), valid, compute=compute)[0]  # noqa: E731
    real = valid[..., None]
    np.testing.assert_array_equal(
        jnp.where(real, forward(other), 0), jnp.where(real, forward(tokens), 0)
    )


def _qkv(t: int, n: int = 4, k: int = 2, h: int = 128, seed: int = 0):
    rng = np.random.default_rng(seed)
    q, kk, v = (jnp.asarray(rng.normal(size=(3, t, m, h)), jnp.float32) for m in (n, k, k))
    valid = np.ones((3, t), bool)
    valid[1, :9] = False
    valid[2, :4] = False
    valid[2, t - 5 :] = False
    return q, kk, v, jnp.asarray(valid)


def test_splash_kernel_matches_xla_attention_in_interpret_mode():
    """T = 40 is padded to one 128-slot block inside; GQA 2:1 without repeating K/V."""
    q, k, v, valid = _qkv(40)
    real = valid[..., None, None]
    weights = jax.random.normal(jax.random.key(2), q.shape)

    def run(fn):
        loss = lambda q, k, v: jnp.sum(jnp.where(real, fn(q, k, v) * weights, 0.0))  # noqa: E731
        return fn(q, k, v), jax.grad(loss, argnums=(0, 1, 2))(q, k, v)

    got, got_grads = run(lambda q, k, v: splash_attention(q, k, v, valid, None, interpret=True))
    want, want_grads = run(lambda q, k, v: dot_product_attention(q, k, v, valid, "xla"))
    np.testing.assert_allclose(jnp.where(real, got, 0), jnp.where(real, want, 0), atol=LOGIT_ATOL)
    assert bool(jnp.all(jnp.isfinite(got)))
    for g, w in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(g, w, atol=GRAD_RTOL * float(jnp.max(jnp.abs(w))))


# Compiles the update's forward + backward (splash in shard_map over FSDP, save_dots remat,
# chunked log-probs) for 4 TPU v5e chips, without any TPU.
_AOT_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp
    from flax import nnx
    from jax.experimental import topologies
    from jax.sharding import NamedSharding, PartitionSpec
    from corea_jax.models import ModelConfig, abstract_model, param_shardings
    from corea_jax.models.compute import ComputeConfig
    from corea_jax.models.logprobs import chunked_token_logprobs
    from corea_jax.parallel.sharding import make_mesh

    topology = topologies.get_topology_desc(platform="tpu", topology_name="v5e:2x2")
    mesh = make_mesh((1, -1, 1), topology.devices)
    cfg = ModelConfig(family="qwen2", vocab_size=1024, hidden_size=256, intermediate_size=512,
                      num_layers=2, num_heads=4, num_kv_heads=2, head_dim=128, qkv_bias=True,
                      tie_word_embeddings=True)
    model = abstract_model(cfg, jnp.bfloat16)
    graphdef, params = nnx.split(model)
    compute = ComputeConfig(remat="save_dots", attention="auto", mesh=mesh)
    assert compute.attention_name() == "splash", compute.attention_name()
    r, t, c = 8, 300, 100

    def loss(params, tokens, valid):
        model = nnx.merge(graphdef, params)
        positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
        hidden, _ = model.hidden_states(tokens, positions, valid, compute=compute)
        lp, _ = chunked_token_logprobs(model, hidden[:, t - c - 1 : -1], tokens[:, t - c :], 32)
        return -jnp.sum(lp * valid[:, t - c :])

    rows = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    spec = lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)
    lowered = jax.jit(jax.value_and_grad(loss)).lower(
        jax.tree.map(spec, params, param_shardings(model, mesh)),
        jax.ShapeDtypeStruct((r, t), jnp.int32, sharding=rows),
        jax.ShapeDtypeStruct((r, t), jnp.bool_, sharding=rows),
    )
    assert "splash" in lowered.as_text(), "no splash kernel in the lowered program"
    memory = lowered.compile().memory_analysis()
    print("COMPILED", len(topology.devices), memory.temp_size_in_bytes)
    """
)


def _libtpu_env() -> dict[str, str] | None:
    """The environment of a process that sees libtpu, or None if it is not installed.

    libtpu comes with the `tpu` extra; `COREA_LIBTPU_PATH` may name a separate directory
    holding it (pip install --target), which is put on that process's PYTHONPATH only.
    """
    env = dict(os.environ, JAX_PLATFORMS="", TPU_ACCELERATOR_TYPE="v5litepod-4")
    env.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # other processes may hold libtpu
    env.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    env.pop("XLA_FLAGS", None)
    extra = os.environ.get("COREA_LIBTPU_PATH")
    if extra:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra, env.get("PYTHONPATH")]))
    elif importlib.util.find_spec("libtpu") is None:
        return None
    probe = subprocess.run(
        [sys.executable, "-c", "import libtpu"], env=env, capture_output=True, cwd=REPO
    )
    return env if probe.returncode == 0 else None


def test_splash_update_compiles_for_a_tpu_topology_ahead_of_time():
    env = _libtpu_env()
    if env is None:
        pytest.skip("libtpu is not importable (install the tpu extra, or set COREA_LIBTPU_PATH)")
    done = subprocess.run(
        [sys.executable, "-c", _AOT_SCRIPT], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    devices, temp = done.stdout.split("COMPILED")[-1].split()
    assert int(devices) == 4 and int(temp) > 0

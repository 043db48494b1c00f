"""The decoder port: parity with transformers, presets, config layouts, mesh invariance."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tiny_models import (
    CORRUPTIONS,
    TINY,
    make_hf_checkpoint,
    make_jax_checkpoint,
    padded_batch,
)

from corea_jax.errors import CoreaError
from corea_jax.models import (
    PRESETS,
    PUBLISHED_NUM_PARAMS,
    CausalLM,
    ModelConfig,
    abstract_model,
    causal_mask,
    load_model,
    param_shardings,
    positions_from_mask,
    save_model,
)
from corea_jax.parallel.sharding import make_mesh

LENGTHS = [12, 7, 3, 12]  # left padding on rows 1 and 2


def _torch():
    return pytest.importorskip(
        "torch", reason="the PyTorch reference is installed on Python 3.11 only"
    )


def _forward(model, tokens, valid):
    return model(tokens, positions_from_mask(valid), causal_mask(valid))[0]


def _hf_logits(model_dir, tokens, valid):
    torch = _torch()
    import transformers

    hf = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, attn_implementation="eager", dtype=torch.float32
    )
    with torch.no_grad():
        out = hf(
            input_ids=torch.tensor(np.asarray(tokens), dtype=torch.long),
            attention_mask=torch.tensor(np.asarray(valid), dtype=torch.long),
            position_ids=torch.tensor(np.asarray(positions_from_mask(valid)), dtype=torch.long),
        )
    return out.logits.numpy()


@pytest.mark.parametrize("hf_id", sorted(PRESETS))
def test_preset_parameter_count_matches_published_size(hf_id):
    model = abstract_model(PRESETS[hf_id], jnp.bfloat16)
    count = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert count == PUBLISHED_NUM_PARAMS[hf_id] == PRESETS[hf_id].num_params()


def test_hf_config_v5_and_legacy_layouts_agree():
    v5 = TINY["llama"].to_hf_config()
    v5.pop("rope_theta"), v5.pop("rope_scaling")
    legacy = TINY["llama"].to_hf_config()
    legacy.pop("rope_parameters")
    legacy["rope_scaling"]["type"] = legacy["rope_scaling"].pop("rope_type")
    assert ModelConfig.from_hf_config(v5) == ModelConfig.from_hf_config(legacy) == TINY["llama"]
    assert ModelConfig.from_hf_config(TINY["qwen2"].to_hf_config()) == TINY["qwen2"]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model_type", "gpt2", "model_type"),
        ("hidden_act", "gelu", "hidden_act"),
        ("use_sliding_window", True, "use_sliding_window"),
        ("rope_parameters", {"rope_type": "yarn", "rope_theta": 1.0, "factor": 2.0}, "yarn"),
    ],
)
def test_hf_config_refuses_unsupported_features(field, value, message):
    hf = TINY["qwen2"].to_hf_config()
    hf[field] = value
    with pytest.raises(CoreaError, match=message):
        ModelConfig.from_hf_config(hf)


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_logits_match_transformers_float32_with_left_padding(family, tmp_path):
    _torch()
    model_dir = make_hf_checkpoint(family, tmp_path / family)
    tokens, valid = padded_batch(TINY[family].vocab_size, LENGTHS)
    ours = np.asarray(_forward(load_model(model_dir), tokens, valid))
    ref = _hf_logits(model_dir, tokens, valid)
    mask = np.asarray(valid)
    assert np.abs(ref[mask]).max() > 1.0  # the comparison is not between tiny numbers
    np.testing.assert_allclose(ours[mask], ref[mask], atol=1e-4, rtol=0)


# bfloat16 parameters and activations against the float32 reference. bf16 keeps 8 bits of
# mantissa and errors add up over the layers; on these checkpoints (logits up to ~5) we measured
# a mean absolute difference of ~0.017, a maximum of ~0.15 and >= 97% top-1 agreement.
BF16_MEAN_ATOL, BF16_MAX_ATOL, BF16_TOP1 = 0.03, 0.25, 0.95


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_bfloat16_logits_agree_with_float32_reference(family, tmp_path):
    _torch()
    model_dir = make_hf_checkpoint(family, tmp_path / family)
    tokens, valid = padded_batch(TINY[family].vocab_size, LENGTHS)
    model = load_model(model_dir, dtype=jnp.bfloat16)
    assert model.model.layers[0].mlp.up_proj.kernel[...].dtype == jnp.bfloat16
    ours = np.asarray(_forward(model, tokens, valid))
    ref = _hf_logits(model_dir, tokens, valid)
    mask = np.asarray(valid)
    diff = np.abs(ours[mask] - ref[mask])
    assert diff.mean() <= BF16_MEAN_ATOL and diff.max() <= BF16_MAX_ATOL
    assert (ours[mask].argmax(-1) == ref[mask].argmax(-1)).mean() >= BF16_TOP1


@pytest.mark.parametrize("family", ["qwen2", "llama"])
@pytest.mark.parametrize("max_shard_bytes", [2**40, 40_000])
def test_export_round_trip_loads_in_transformers(family, max_shard_bytes, tmp_path):
    _torch()
    src = make_jax_checkpoint(family, tmp_path / "ours", seed=3)
    model = load_model(src)
    out = save_model(model, tmp_path / "export", max_shard_bytes=max_shard_bytes)
    sharded = (out / "model.safetensors.index.json").exists()
    assert sharded == (max_shard_bytes < 2**40)
    tokens, valid = padded_batch(TINY[family].vocab_size, LENGTHS, seed=1)
    ours = np.asarray(_forward(model, tokens, valid))
    ref = _hf_logits(out, tokens, valid)
    mask = np.asarray(valid)
    np.testing.assert_allclose(ours[mask], ref[mask], atol=1e-5, rtol=0)
    again = np.asarray(_forward(load_model(out), tokens, valid))
    np.testing.assert_array_equal(again, ours)


def test_export_bfloat16_and_overwrite_keeps_a_complete_directory(tmp_path):
    src = make_jax_checkpoint("qwen2", tmp_path / "a")
    model = load_model(src)
    out = save_model(model, tmp_path / "b", dtype=jnp.bfloat16)
    out = save_model(model, tmp_path / "b", dtype=jnp.bfloat16)  # replaces, atomically
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temp dirs left
    reloaded = load_model(out, dtype=jnp.bfloat16)
    np.testing.assert_array_equal(
        np.asarray(reloaded.model.norm.weight[...]),
        np.asarray(model.model.norm.weight[...]).astype(jnp.bfloat16),
    )


def _rewrite(path, drop=(), add=None, reshape=None):
    from corea_jax.models import safetensors_io

    tensors = {k: np.array(v.open()) for k, v in safetensors_io.read_header(path).items()}
    for k in drop:
        del tensors[k]
    tensors.update(add or {})
    for k, shape in (reshape or {}).items():
        tensors[k] = np.zeros(shape, np.float32)
    safetensors_io.write_file(path, tensors)


def test_loader_errors_name_the_keys_and_files(tmp_path):
    d = make_jax_checkpoint("llama", tmp_path / "m")
    f = d / "model.safetensors"
    _rewrite(f, drop=["model.layers.1.mlp.up_proj.weight"])
    with pytest.raises(CoreaError, match=r"missing 1 key.*model\.layers\.1\.mlp\.up_proj\.weight"):
        load_model(d)

    d = make_jax_checkpoint("llama", tmp_path / "u")
    _rewrite(d / "model.safetensors", add={"model.layers.0.extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(CoreaError, match=r"unexpected 1 key.*model\.layers\.0\.extra\.weight"):
        load_model(d)

    d = make_jax_checkpoint("llama", tmp_path / "s")
    _rewrite(d / "model.safetensors", reshape={"model.layers.0.self_attn.q_proj.weight": (64, 32)})
    with pytest.raises(CoreaError, match=r"model\.safetensors: tensor model\.layers\.0\.self_attn"):
        load_model(d)

    d = make_jax_checkpoint("llama", tmp_path / "f")
    (d / "model.safetensors").unlink()
    with pytest.raises(CoreaError, match=r"no \*\.safetensors"):
        load_model(d)
    with pytest.raises(CoreaError, match="not found"):
        load_model(tmp_path / "nowhere")

    d = make_jax_checkpoint("llama", tmp_path / "shards", max_shard_bytes=40_000)
    next(d.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(CoreaError, match=r"lists shard model-00002"):
        load_model(d)


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_corrupt_safetensors_is_one_error_naming_the_file(how, tmp_path):
    d = make_jax_checkpoint("qwen2", tmp_path / "m")
    f = d / "model.safetensors"
    f.write_bytes(CORRUPTIONS[how](f.read_bytes()))
    with pytest.raises(CoreaError) as error:
        load_model(d)
    message = str(error.value)
    assert message.startswith(f"{f}: ") and "\n" not in message


def test_ignored_checkpoint_keys_are_allowed(tmp_path):
    d = make_jax_checkpoint("qwen2", tmp_path / "m")
    emb = np.zeros((512, 64), np.float32)
    _rewrite(
        d / "model.safetensors",
        add={"lm_head.weight": emb, "model.layers.0.self_attn.rotary_emb.inv_freq": emb[0]},
    )
    load_model(d)  # tied head copy and RoPE buffers are deliberately ignored


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_forward_on_one_device_equals_forward_on_2x2x2_mesh(family, tmp_path):
    d = make_jax_checkpoint(family, tmp_path / family, seed=5)
    tokens, valid = padded_batch(TINY[family].vocab_size, LENGTHS)
    results = []
    for shape in [(1, 1, 1), (2, 2, 2)]:
        mesh = make_mesh(shape, jax.devices()[: int(np.prod(shape))])
        model = load_model(d, mesh=mesh)
        kernel = model.model.layers[0].mlp.gate_proj.kernel[...]
        assert kernel.sharding.mesh.shape == dict(
            zip(("data", "fsdp", "tensor"), shape, strict=True)
        )
        graphdef, state = nnx.split(model)

        @jax.jit
        def fwd(state, tokens, valid, graphdef=graphdef):
            return _forward(nnx.merge(graphdef, state), tokens, valid)

        batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp")))
        results.append(
            np.asarray(fwd(state, jax.device_put(tokens, batch), jax.device_put(valid, batch)))
        )
    np.testing.assert_allclose(results[0], results[1], atol=2e-5, rtol=0)


def test_sharded_parameters_hold_only_their_slice(tmp_path):
    d = make_jax_checkpoint("llama", tmp_path / "m")
    mesh = make_mesh((2, 2, 2))
    model = load_model(d, mesh=mesh)
    kernel = model.model.layers[0].mlp.gate_proj.kernel[...]  # [D=64, F=160]: fsdp x tensor
    assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    assert {s.data.shape for s in kernel.addressable_shards} == {(32, 80)}
    shardings = param_shardings(model, mesh)
    (embedding,) = jax.tree.leaves(shardings["model"]["embed_tokens"])
    assert embedding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")


def test_random_init_matches_its_own_export(tmp_path):
    cfg = dataclasses.replace(TINY["qwen2"], num_layers=1)
    model = CausalLM(cfg, rngs=nnx.Rngs(0))
    tokens, valid = padded_batch(cfg.vocab_size, [5, 3])
    out = save_model(model, tmp_path / "m")
    np.testing.assert_array_equal(
        np.asarray(_forward(load_model(out), tokens, valid)),
        np.asarray(_forward(model, tokens, valid)),
    )


def test_check_preset_names_the_first_differing_field():
    from corea_jax.models import PRESETS, check_preset, preset

    for hf_id, config in PRESETS.items():
        check_preset(hf_id, config, "its own preset")  # every preset matches itself
    small = dataclasses.replace(preset("Qwen/Qwen2.5-7B-Instruct"), num_layers=2)
    with pytest.raises(CoreaError, match=r"DIR/config.json has num_layers=2, the preset 28"):
        check_preset("Qwen/Qwen2.5-7B-Instruct", small, "DIR/config.json")

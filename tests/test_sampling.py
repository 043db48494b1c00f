"""The sampler: parity with transformers' greedy generate, cache invariants, seeds, stopping."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tiny_models import TINY, make_hf_checkpoint, make_jax_checkpoint

from corea_jax.errors import CoreaError
from corea_jax.models import CausalLM, causal_mask, load_model, positions_from_mask
from corea_jax.parallel.sharding import make_mesh
from corea_jax.sampling import (
    Greedy,
    Sampler,
    Temperature,
    TopK,
    TopP,
    apply_stop_strings,
    decode_step,
    prefill,
)

PROMPTS = [[5, 17, 99, 3, 250, 8, 41, 7, 300, 12], [44, 9, 13], [101, 102, 103, 104, 105, 106]]


def _model(family="qwen2", seed=0):
    return CausalLM(TINY[family], rngs=nnx.Rngs(seed))


def _scaled(model, scale=8.0):
    """Scales the initial weights so samples are not near-uniform (a stronger random model)."""
    state = nnx.state(model)
    state = jax.tree.map(lambda x: x * scale if x.ndim == 2 else x, state)
    nnx.update(model, state)
    return model


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_greedy_matches_transformers_generate(family, tmp_path):
    torch = pytest.importorskip("torch", reason="the PyTorch reference is on Python 3.11 only")
    import transformers

    model_dir = make_hf_checkpoint(family, tmp_path / family)
    hf = transformers.AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager")
    width = max(len(p) for p in PROMPTS)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in PROMPTS])
    attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in PROMPTS])
    with torch.no_grad():
        ref = hf.generate(
            input_ids=ids, attention_mask=attn, do_sample=False, max_new_tokens=40,
            min_new_tokens=40, eos_token_id=None, pad_token_id=0,
        )[:, width:].numpy()  # fmt: skip
    out = Sampler(load_model(model_dir), eos_ids=()).generate(PROMPTS, max_new_tokens=40)
    assert out.tokens.shape == (3, 40) and list(out.lengths) == [40, 40, 40]
    np.testing.assert_array_equal(out.tokens, ref)
    assert out.finish_reasons == ["length"] * 3


def _forward_right_padded(model, rows):
    """One forward over token lists right-padded to a common length -> logits [B, T, V]."""
    width = max(len(row) for row in rows)
    tokens = jnp.asarray([row + [0] * (width - len(row)) for row in rows])
    valid = jnp.asarray([[1] * len(row) + [0] * (width - len(row)) for row in rows], bool)
    return model(tokens, positions_from_mask(valid), causal_mask(valid))[0]


def test_cached_decode_equals_uncached_forward_at_every_step():
    model = _scaled(_model("llama"))
    p, steps = 16, 12
    out = Sampler(model, eos_ids=()).generate(PROMPTS, max_new_tokens=steps)
    tokens = np.zeros((3, p), np.int32)
    valid = np.zeros((3, p), bool)
    for i, pr in enumerate(PROMPTS):
        tokens[i, p - len(pr) :], valid[i, p - len(pr) :] = pr, True
    # Causal attention: the full forward's logits at column c are those of the prefix [:c + 1].
    full = _forward_right_padded(model, [pr + out.row_tokens(i) for i, pr in enumerate(PROMPTS)])
    logits, cache = prefill(model, jnp.asarray(tokens), jnp.asarray(valid), p + steps, jnp.float32)
    lengths = jnp.asarray(valid.sum(1), jnp.int32)
    step_fn = jax.jit(lambda c, t, s: decode_step(model, c, t, s, lengths, p))
    for step in range(steps):
        ref = np.stack([full[i, len(pr) - 1 + step] for i, pr in enumerate(PROMPTS)])
        np.testing.assert_allclose(np.asarray(logits), ref, atol=1e-4, rtol=1e-5)
        logits, cache = step_fn(cache, jnp.asarray(out.tokens[:, step]), step)


def test_logprobs_equal_teacher_forced_forward():
    model = _scaled(_model("qwen2"))
    method = TopP(temperature=0.8, p=0.9)
    out = Sampler(model, eos_ids=(2,)).generate(
        PROMPTS, max_new_tokens=20, n=2, method=method, seed=3
    )
    rows = [PROMPTS[out.prompt_index[r]] + out.row_tokens(r) for r in range(len(out.lengths))]
    full = _forward_right_padded(model, rows)
    for r, seq in enumerate(rows):
        start = len(PROMPTS[out.prompt_index[r]])
        step_logits = full[r, start - 1 : len(seq) - 1]
        sampled = jnp.asarray(seq[start:])[:, None]
        lp = jax.nn.log_softmax(step_logits)
        expected = np.asarray(jnp.take_along_axis(lp, sampled, 1))[:, 0]
        np.testing.assert_allclose(out.logprobs[r, : out.lengths[r]], expected, atol=1e-4)
        assert np.all(out.logprobs[r, out.lengths[r] :] == 0)
        processed = jax.nn.log_softmax(method.processed_logits(step_logits))
        expected = np.asarray(jnp.take_along_axis(processed, sampled, 1))[:, 0]
        assert np.all(np.isfinite(expected))  # every sampled token was inside the nucleus
        np.testing.assert_allclose(out.processed_logprobs[r, : out.lengths[r]], expected, atol=1e-4)


def test_top1_sampling_equals_greedy_and_seeds_are_reproducible():
    model = _scaled(_model("qwen2"))
    sampler = Sampler(model, eos_ids=())
    greedy = sampler.generate(PROMPTS, max_new_tokens=16)
    top1 = sampler.generate(PROMPTS, max_new_tokens=16, method=TopK(temperature=1.0, k=1), seed=9)
    np.testing.assert_array_equal(greedy.tokens, top1.tokens)
    np.testing.assert_allclose(top1.processed_logprobs, 0.0, atol=1e-6)
    a = sampler.generate(PROMPTS, max_new_tokens=16, n=4, method=Temperature(1.0), seed=1)
    b = sampler.generate(PROMPTS, max_new_tokens=16, n=4, method=Temperature(1.0), seed=1)
    c = sampler.generate(PROMPTS, max_new_tokens=16, n=4, method=Temperature(1.0), seed=2)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)
    # The n samples of one prompt differ from each other.
    assert len({tuple(a.row_tokens(r)) for r in range(4)}) > 1


def test_n_samples_share_one_prefill_and_equal_repeated_prompts():
    model = _scaled(_model("llama"))
    sampler = Sampler(model, eos_ids=())
    grouped = sampler.generate(PROMPTS, max_new_tokens=8, n=3, method=Temperature(1.0), seed=4)
    repeated = [p for p in PROMPTS for _ in range(3)]
    flat = sampler.generate(repeated, max_new_tokens=8, method=Temperature(1.0), seed=4)
    # Same row keys (seed, row index) -> identical samples: the shared prefill is exact.
    np.testing.assert_array_equal(grouped.tokens, flat.tokens)
    np.testing.assert_allclose(grouped.logprobs, flat.logprobs, atol=1e-5)
    assert list(grouped.prompt_index) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    jaxpr = jax.make_jaxpr(lambda t, v: prefill(model, t, v, 32, jnp.float32)[0])(
        jnp.zeros((3, 16), jnp.int32), jnp.ones((3, 16), bool)
    )
    assert "while" not in str(jaxpr)  # prefill is one pass, the loop is decode only


def test_eos_and_stop_sequences_end_rows():
    model = _scaled(_model("qwen2"))
    sampler = Sampler(model, eos_ids=())
    free = sampler.generate(PROMPTS, max_new_tokens=24)
    eos = int(free.tokens[0, 5])  # make the 6th greedy token of row 0 an EOS id
    out = Sampler(model, eos_ids=(eos,)).generate(PROMPTS, max_new_tokens=24)
    first = int(np.argmax(free.tokens[0] == eos))
    assert out.lengths[0] == first + 1 and out.finish_reasons[0] == "eos"
    assert np.all(out.tokens[0, first + 1 :] == 0)
    stop = free.tokens[1, 3:5].tolist()
    out = sampler.generate(PROMPTS, max_new_tokens=24, stop_token_seqs=[stop, [511, 510, 509]])
    ends = [i + 2 for i in range(23) if free.tokens[1, i : i + 2].tolist() == stop]
    assert out.lengths[1] == ends[0] and out.finish_reasons[1] == "stop"
    np.testing.assert_array_equal(out.tokens[1, : ends[0]], free.tokens[1, : ends[0]])


def test_stop_strings_cut_tokens_logprobs_and_text_together():
    model = _scaled(_model("qwen2"))
    out = Sampler(model, eos_ids=()).generate(PROMPTS, max_new_tokens=12)
    decode = lambda ids: " ".join(f"t{i}" for i in ids)  # noqa: E731
    stop = f"t{out.tokens[2, 4]} t{out.tokens[2, 5]}"
    cut = apply_stop_strings(out, decode, [stop])
    assert cut.finish_reasons[2] == "stop" and cut.texts[2].endswith(stop)
    assert cut.lengths[2] <= 6 and stop in decode(cut.row_tokens(2))
    assert stop not in decode(cut.row_tokens(2)[:-1])
    assert np.all(cut.logprobs[2, cut.lengths[2] :] == 0)


def test_prompt_and_decode_buckets_reuse_compiled_programs():
    from corea_jax.sampling import sampler as sampler_module

    model = _model("qwen2")
    sampler = Sampler(model, eos_ids=())
    sampler.generate([[1, 2, 3]], max_new_tokens=5)
    before = sampler_module._generate._cache_size()
    sampler.generate([[1, 2, 3, 4, 5, 6, 7]], max_new_tokens=9)  # same buckets (16, 16)
    assert sampler_module._generate._cache_size() == before
    sampler.generate([[1] * 20], max_new_tokens=5)  # prompt bucket 32: one new program
    assert sampler_module._generate._cache_size() == before + 1


def test_sampler_on_a_mesh_matches_single_device(tmp_path):
    d = make_jax_checkpoint("llama", tmp_path / "m", seed=2)
    single = Sampler(_scaled(load_model(d)), eos_ids=()).generate(
        PROMPTS + [[7, 8]], max_new_tokens=10, n=2, method=Temperature(1.0), seed=5
    )
    mesh = make_mesh((2, 2, 2))
    sharded_model = _scaled(load_model(d, mesh=mesh))
    assert sharded_model.model.layers[0].mlp.up_proj.kernel[...].sharding.mesh.size == 8
    sharded = Sampler(sharded_model, eos_ids=(), mesh=mesh).generate(
        PROMPTS + [[7, 8]], max_new_tokens=10, n=2, method=Temperature(1.0), seed=5
    )
    np.testing.assert_array_equal(single.tokens, sharded.tokens)
    np.testing.assert_allclose(single.logprobs, sharded.logprobs, atol=1e-4)


@pytest.mark.parametrize(
    "tokenizer_eos, tokenizer_pad, eos_ids, pad_id",
    [
        (7, 5, (2, 7, 9), 5),  # the tokenizer's EOS joins the model's; its pad id is used
        (9, None, (2, 9), 0),  # an EOS the model already has is kept once; no pad id -> 0
        (None, 3, (2, 9), 3),  # a tokenizer without EOS leaves the model's ids
    ],
)
def test_for_tokenizer_stops_at_model_and_tokenizer_eos(
    tokenizer_eos, tokenizer_pad, eos_ids, pad_id
):
    model = CausalLM(dataclasses.replace(TINY["qwen2"], eos_token_id=(9, 2)), rngs=nnx.Rngs(0))
    tokenizer = types.SimpleNamespace(eos_token_id=tokenizer_eos, pad_token_id=tokenizer_pad)
    sampler = Sampler.for_tokenizer(model, tokenizer, decode_segments=2, min_bucket=32)
    assert (sampler.eos_ids, sampler.pad_id) == (eos_ids, pad_id)
    assert (sampler.decode_segments, sampler.min_bucket) == (2, 32)  # the rest passes through


def test_kv_cache_over_budget_fails_fast_with_an_estimate():
    cfg = dataclasses.replace(TINY["qwen2"], num_layers=1)
    sampler = Sampler(CausalLM(cfg, rngs=nnx.Rngs(0)), memory_budget_bytes=10_000)
    with pytest.raises(CoreaError, match=r"KV cache for 8 rows x 32 slots needs .* GiB"):
        sampler.generate([[1, 2]] * 4, n=2, max_new_tokens=16)


def test_bad_arguments_are_clear_errors():
    sampler = Sampler(_model(), eos_ids=())
    with pytest.raises(CoreaError, match="max_new_tokens"):
        sampler.generate(PROMPTS, max_new_tokens=0)
    with pytest.raises(CoreaError, match="empty"):
        sampler.generate([[]], max_new_tokens=2)
    with pytest.raises(CoreaError, match="temperature"):
        Temperature(0.0)
    assert Greedy() == Greedy()


def test_decode_segments_change_no_sample():
    from corea_jax.sampling.sampler import segment_ends

    assert segment_ends(128, 4) == (32, 64, 96, 128)
    assert segment_ends(80, 4) == (20, 40, 60, 80) and segment_ends(16, 4) == (16,)
    assert segment_ends(48, 4) == (16, 32, 48)
    model = _scaled(_model("llama"))
    kwargs = dict(max_new_tokens=40, n=2, method=Temperature(1.0), seed=6)
    one = Sampler(model, eos_ids=(), decode_segments=1).generate(PROMPTS, **kwargs)
    four = Sampler(model, eos_ids=(), decode_segments=4).generate(PROMPTS, **kwargs)
    np.testing.assert_array_equal(one.tokens, four.tokens)
    np.testing.assert_allclose(one.logprobs, four.logprobs, atol=1e-5)
    # A row that stops in the first segment stays stopped through the later ones.
    eos = int(one.tokens[0, 3])
    first = int(np.argmax(one.tokens[0] == eos))
    stopped = Sampler(model, eos_ids=(eos,), decode_segments=4).generate(PROMPTS, **kwargs)
    assert stopped.lengths[0] == first + 1 and stopped.finish_reasons[0] == "eos"


def test_memory_estimate_counts_the_cache_growing_between_segments():
    cfg = dataclasses.replace(TINY["qwen2"], num_layers=1)
    sampler = Sampler(CausalLM(cfg, rngs=nnx.Rngs(0)), memory_budget_bytes=10_000)
    # 64 new tokens: segments end at 16, 32, 48, 64; the last growth holds 16 + 48 and 16 + 64.
    per_slot_row = sampler.kv_cache_bytes(1, 1)
    with pytest.raises(CoreaError, match=r"4 rows x 80 slots") as err:
        sampler.generate([[1, 2]] * 4, max_new_tokens=64)
    need = 4 * (80 + 64) * per_slot_row
    assert f"{need / 2**30:.2f} GiB" in str(err.value)


def test_one_new_token_comes_from_the_prefill_logits_alone():
    """The last token is drawn after the decode loop, from the logits the loop left: with
    max_new_tokens = 1 those are the prefill's, and the token and its log-prob match a plain
    forward pass and the first token of a longer generation."""
    model = _scaled(_model("qwen2"))
    sampler = Sampler(model, eos_ids=())
    one = sampler.generate(PROMPTS, max_new_tokens=1)
    two = sampler.generate(PROMPTS, max_new_tokens=2)
    assert one.tokens.shape == (3, 1) and list(one.lengths) == [1, 1, 1]
    assert one.finish_reasons == ["length"] * 3
    np.testing.assert_array_equal(one.tokens[:, 0], two.tokens[:, 0])
    for r, prompt in enumerate(PROMPTS):
        last = _forward_right_padded(model, [prompt])[0, len(prompt) - 1]
        assert one.tokens[r, 0] == int(jnp.argmax(last))
        expected = float(jax.nn.log_softmax(last)[one.tokens[r, 0]])
        np.testing.assert_allclose(one.logprobs[r, 0], expected, atol=1e-4)

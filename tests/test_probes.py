"""corea_jax.probes: hidden-state features, the CV-regularised logistic probe, its file."""

from __future__ import annotations

import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tiny_models import TINY

from corea_jax.errors import CoreaError
from corea_jax.models import CausalLM, causal_mask, positions_from_mask, save_model
from corea_jax.probes import (
    FeatureConfig,
    Probe,
    answer_token_span,
    completion_features,
    fit_probe,
    hidden_at_layer,
    load_probe,
    model_identity,
    prompt_features,
    save_probe,
)

CFG = TINY["qwen2"]  # 2 layers, D = 64


@pytest.fixture(scope="module")
def model():
    """The tiny model with its matrices scaled from std 0.02 to 0.15, so hidden states are O(1)
    and attention far from uniform: a token attended to that should not be shows."""
    model = CausalLM(CFG, rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda p: p * 7.5 if p.ndim == 2 else p, params))
    return model


def random_rows(rng, n, max_prompt=10, max_completion=6, vocab=CFG.vocab_size):
    prompts = [rng.integers(3, vocab, rng.integers(1, max_prompt + 1)).tolist() for _ in range(n)]
    completions = [rng.integers(3, vocab, rng.integers(0, max_completion + 1)).tolist()
                   for _ in range(n)]  # fmt: skip
    return prompts, completions


def right_padded(rows, length=32, batch=8):
    """Token lists -> tokens, valid [batch, length] (one shape, so the jitted helpers below
    compile once per layer)."""
    tokens = np.zeros((batch, length), np.int32)
    valid = np.zeros((batch, length), bool)
    valid[:, 0] = True  # filler rows: one token
    for i, r in enumerate(rows):
        tokens[i, : len(r)], valid[i, : len(r)] = r, True
    return jnp.asarray(tokens), jnp.asarray(valid)


@functools.partial(jax.jit, static_argnames=("graphdef", "layer"))
def _hidden(graphdef, state, tokens, valid, *, layer):
    return hidden_at_layer(nnx.merge(graphdef, state), tokens, valid, layer)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _reference(graphdef, state, tokens, valid):
    model = nnx.merge(graphdef, state)
    return model.hidden_states(tokens, positions_from_mask(valid), causal_mask(valid))[0]


def hidden(model, rows, layer):
    """[len(rows), 32, D]: the rows' hidden states, right-padded in one batch."""
    out = _hidden(*nnx.split(model), *right_padded(rows), layer=layer)
    return np.asarray(out)[: len(rows)]


# --- features ---------------------------------------------------------------------------------


def test_last_layer_equals_hidden_states(model):
    rows = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    want = np.asarray(_reference(*nnx.split(model), *right_padded(rows)))[:3]
    got = hidden(model, rows, CFG.num_layers)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(hidden(model, rows, -1), got)
    layer1 = hidden(model, rows, 1)
    assert np.abs(layer1 - got).max() > 1e-3
    np.testing.assert_array_equal(hidden(model, rows, -2), layer1)


@pytest.mark.parametrize("layer", [0, 3, -3, True, 1.0])
def test_bad_layer_is_refused(model, layer):
    with pytest.raises(CoreaError, match="probe.features.layer"):
        hidden_at_layer(model, *right_padded([[5, 6]]), layer)


@pytest.mark.parametrize(
    "kwargs, field",
    [({"layer": 0}, "layer"), ({"pooling": "mean"}, "pooling"), ({"batch_size": 0}, "batch_size")],
)
def test_feature_config_is_validated(kwargs, field):
    with pytest.raises(CoreaError, match=f"probe.features.{field}"):
        FeatureConfig(**kwargs)


def test_last_pooling_is_the_final_completion_token_and_padding_invariant(model):
    prompts, completions = random_rows(np.random.default_rng(1), 7, max_prompt=20)
    completions[2] = []  # an empty completion pools the last prompt token
    batched = completion_features(model, prompts, completions, FeatureConfig(batch_size=4))
    alone = completion_features(model, prompts, completions, FeatureConfig(batch_size=1))
    assert batched.shape == (7, CFG.hidden_size) and batched.dtype == np.float32
    # The same row with other neighbours, another batch size and another padded length.
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-5)
    rows = [p + c for p, c in zip(prompts, completions, strict=True)]
    states = hidden(model, rows, -1)
    for i, row in enumerate(rows):
        np.testing.assert_allclose(batched[i], states[i, len(row) - 1], rtol=1e-5, atol=1e-5)


def test_completion_mean_pools_the_completion_tokens(model):
    prompts, completions = [[5, 6, 7], [8, 9]], [[10, 11, 12, 13], []]
    got = completion_features(
        model, prompts, completions, FeatureConfig(layer=1, pooling="completion_mean")
    )
    states = hidden(model, [prompts[0] + completions[0], prompts[1]], 1)
    np.testing.assert_allclose(got[0], states[0, 3:7].mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], states[1, 1], rtol=1e-5, atol=1e-5)


def test_answer_mean_pools_the_answer_tokens_and_falls_back_to_the_last(model):
    prompts, completions = [[5, 6, 7], [8, 9]], [[10, 11, 12, 13, 14], [15, 16]]
    cfg = FeatureConfig(layer=1, pooling="answer_mean")
    got = completion_features(model, prompts, completions, cfg, spans=[(1, 3), (0, 0)])
    states = hidden(model, [p + c for p, c in zip(prompts, completions, strict=True)], 1)
    np.testing.assert_allclose(got[0], states[0, 4:6].mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], states[1, 3], rtol=1e-5, atol=1e-5)  # no answer: last
    with pytest.raises(CoreaError, match="needs one answer span per row"):
        completion_features(model, prompts, completions, cfg)
    with pytest.raises(CoreaError, match="outside its 2 completion tokens"):
        completion_features(model, prompts, completions, cfg, spans=[(0, 1), (1, 3)])


def test_answer_token_span_from_offsets():
    text = "<think>2+2</think><answer>14</answer><confidence>0.9</confidence>"
    # A tokenisation of `text` by character offsets: "<answer>" is one token, "1", "4" two.
    cuts = [0, 7, 10, 18, 26, 27, 28, 37, 49, 52, 65]
    offsets = list(zip(cuts[:-1], cuts[1:], strict=True))
    assert answer_token_span(offsets, text) == (4, 6)
    assert answer_token_span(offsets, "<think>no answer</think>") == (0, 0)
    merged = [(0, 26), (26, 30), (30, 65)]  # a token straddling the tag still counts
    assert answer_token_span(merged, text) == (1, 2)


def test_prompt_features_are_completion_features_without_completions(model):
    prompts, _ = random_rows(np.random.default_rng(2), 5)
    got = prompt_features(model, prompts, layer=1, batch_size=4)
    want = completion_features(model, prompts, [[]] * 5, FeatureConfig(layer=1, batch_size=4))
    np.testing.assert_array_equal(got, want)
    with pytest.raises(CoreaError, match="prompt 1 is empty"):
        prompt_features(model, [[5], []])


# --- logistic probe ---------------------------------------------------------------------------


def noisy_direction(rng, n, d, direction, sharpness):
    """Gaussian features; P(correct) = sigmoid(sharpness * x . direction)."""
    x = rng.normal(size=(n, d))
    s = x @ direction
    return x, rng.random(n) < 1.0 / (1.0 + np.exp(-sharpness * s)), s


def test_probe_recovers_a_noisy_hidden_direction():
    rng = np.random.default_rng(0)
    d = 20
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    x, y, _ = noisy_direction(rng, 2000, d, u, 3.0)
    xt, yt, st = noisy_direction(rng, 20000, d, u, 3.0)
    probe = fit_probe(x, y)
    # Bayes accuracy = E[sigmoid(3 |s|)], s ~ N(0, 1): about 0.834; the Bayes rule 1{s > 0}
    # measures it on the same held-out rows.
    bayes = np.mean((st > 0) == yt)
    assert 0.82 < bayes < 0.85
    accuracy = np.mean((probe.predict(xt) > 0.5) == yt)
    assert accuracy > bayes - 0.015
    assert probe.direction @ u > 0.9
    p = probe.predict(xt)
    assert np.all((p > 0) & (p < 1))
    assert probe.n_train == 2000 and abs(probe.positive_rate - y.mean()) < 1e-12
    assert len(probe.cv_table) == 11 and probe.cv_table[probe.c] == min(probe.cv_table.values())
    # A well-determined problem (N = 2000, D = 20) needs little regularisation.
    assert probe.c >= 0.1


def test_cv_picks_strong_regularisation_for_few_examples_and_many_noise_dims():
    rng = np.random.default_rng(0)
    u = np.zeros(200)
    u[0] = 1.0
    x, y, _ = noisy_direction(rng, 40, 200, u, 0.5)
    probe = fit_probe(x, y, folds=5, seed=3)
    assert probe.c <= 0.0317  # vs >= 0.1 in the well-determined case above
    # Same data, same seed: the same probe.
    again = fit_probe(x, y, folds=5, seed=3)
    np.testing.assert_array_equal(probe.weight, again.weight)


def test_cv_with_several_answers_per_question_folds_whole_questions():
    """40 questions x 8 near-identical sampled answers, a label per question and no direction
    that generalises: row folds let the fit memorise each question (weakest L2 wins); folds of
    whole questions (`groups`) see that nothing generalises (strongest L2 wins)."""
    rng = np.random.default_rng(0)
    questions, samples, d = 40, 8, 60
    x = np.repeat(rng.normal(size=(questions, d)), samples, axis=0)
    x += 0.05 * rng.normal(size=x.shape)
    y = np.repeat(rng.random(questions) < 0.5, samples)
    groups = np.repeat(np.arange(questions), samples)
    assert fit_probe(x, y, folds=5, seed=0).c >= 10.0
    assert fit_probe(x, y, folds=5, seed=0, groups=groups).c <= 0.01


def test_fit_edge_cases():
    x = np.random.default_rng(0).normal(size=(12, 3))
    with pytest.raises(CoreaError, match="all 12 labels are True"):
        fit_probe(x, np.ones(12, bool))
    with pytest.raises(CoreaError, match="only 1 example"):
        fit_probe(x, np.arange(12) == 0)
    with pytest.raises(CoreaError, match="probe.folds"):
        fit_probe(x, np.arange(12) % 2 == 0, folds=1)
    with pytest.raises(CoreaError, match="not finite"):
        fit_probe(np.full((12, 3), np.nan), np.arange(12) % 2 == 0)


# --- end to end on the model ------------------------------------------------------------------


def test_probe_finds_a_direction_in_the_models_hidden_states(model):
    rng = np.random.default_rng(4)
    prompts, completions = random_rows(rng, 1024)
    cfg = FeatureConfig(layer=1, batch_size=64)
    features = completion_features(model, prompts, completions, cfg)
    # Labels: the layer-1 state of each row's final token above or below its median along a
    # random direction u (the pooling itself is checked against hidden_at_layer above).
    u = rng.normal(size=CFG.hidden_size)
    score = features @ u
    labels = score > np.median(score)
    probe = fit_probe(features[:768], labels[:768])
    # The labels are a deterministic linear threshold (Bayes accuracy 1); 768 rows in D = 64
    # recover it to 0.98 held-out accuracy (measured).
    accuracy = np.mean((probe.predict(features[768:]) > 0.5) == labels[768:])
    assert accuracy >= 0.93


# --- store ------------------------------------------------------------------------------------


def small_probe(d=4):
    rng = np.random.default_rng(0)
    return Probe(
        mean=rng.normal(size=d),
        scale=1 + rng.random(d),
        weight=rng.normal(size=d),
        bias=-0.25,
        c=0.1,
        cv_table={0.01: 0.6, 0.1: 0.5},
        n_train=100,
        positive_rate=0.4,
    )


SETTINGS = {"layer": -1, "pooling": "last", "split": "calibration"}


@pytest.fixture(scope="module")
def model_dirs(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    a = save_model(model, root / "a")
    b = save_model(CausalLM(CFG, rngs=nnx.Rngs(1)), root / "b")
    return a, b


def test_model_identity_depends_on_the_weights_not_the_path(model_dirs, tmp_path):
    a, b = model_dirs
    copy = shutil.copytree(a, tmp_path / "elsewhere" / "a-copy")
    os.utime(copy / "config.json", (0, 0))
    assert model_identity(copy) == model_identity(a) != model_identity(b)
    with pytest.raises(CoreaError, match="config.json"):
        model_identity(tmp_path)


def test_probe_round_trip(tmp_path):
    probe = small_probe()
    path = save_probe(tmp_path / "p.json", probe, kind="probe", model_identity="m1",
                      settings=SETTINGS)  # fmt: skip
    back = load_probe(path, kind="probe", model_identity="m1", settings=dict(SETTINGS))
    for name in ("mean", "scale", "weight"):
        np.testing.assert_array_equal(getattr(back, name), getattr(probe, name))
    assert (back.bias, back.c, back.cv_table, back.n_train, back.positive_rate) == (
        probe.bias, probe.c, probe.cv_table, probe.n_train, probe.positive_rate,
    )  # fmt: skip
    x = np.random.default_rng(1).normal(size=(5, 4))
    np.testing.assert_array_equal(back.predict(x), probe.predict(x))


def test_load_refuses_another_model_kind_or_settings(model_dirs, tmp_path):
    a, b = model_dirs
    path = tmp_path / "router.json"
    save_probe(path, small_probe(), kind="router", model_identity=model_identity(a),
               settings=SETTINGS)  # fmt: skip
    with pytest.raises(CoreaError, match=f"probe {path} was fitted for model") as e:
        load_probe(path, kind="router", model_identity=model_identity(b), settings=SETTINGS)
    assert "\n" not in str(e.value)
    with pytest.raises(CoreaError, match="holds a 'router', not a 'probe'"):
        load_probe(path, kind="probe", model_identity=model_identity(a), settings=SETTINGS)
    with pytest.raises(CoreaError, match="fitted with layer=-1, this run has 2"):
        load_probe(path, kind="router", model_identity=model_identity(a),
                   settings={**SETTINGS, "layer": 2})  # fmt: skip


def test_corrupt_or_missing_file_is_a_coreaerror_and_a_failed_save_keeps_the_old(tmp_path):
    path = tmp_path / "p.json"
    with pytest.raises(CoreaError, match="cannot read"):
        load_probe(path, kind="probe", model_identity="m", settings={})
    save_probe(path, small_probe(), kind="probe", model_identity="m", settings={})
    good = path.read_text()
    with pytest.raises(CoreaError, match="not JSON-serialisable"):
        save_probe(path, small_probe(), kind="probe", model_identity="m", settings={"x": object()})
    with pytest.raises(CoreaError, match="kind="):
        save_probe(path, small_probe(), kind="probes", model_identity="m", settings={})
    assert path.read_text() == good
    path.write_text(good[: len(good) // 2])
    with pytest.raises(CoreaError, match="corrupt"):
        load_probe(path, kind="probe", model_identity="m", settings={})
    record = json.loads(good)
    record["weight"] = record["weight"][:-1]
    path.write_text(json.dumps(record))
    with pytest.raises(CoreaError, match="corrupt"):
        load_probe(path, kind="probe", model_identity="m", settings={})
    del record["bias"]
    path.write_text(json.dumps(record))
    with pytest.raises(CoreaError, match="corrupt"):
        load_probe(path, kind="probe", model_identity="m", settings={})

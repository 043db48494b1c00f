"""Matched decoding (issue 16): k SLM samples per question at the rollout temperature; pass@1 is
mean@k, the cascade defers sample by sample, the LLM is asked once per question, and the
intervals resample questions with their samples together."""

from __future__ import annotations

import json

import numpy as np
import pytest

from corea_jax.cascade import CascadeConfig
from corea_jax.cascade.intervals import choice_intervals
from corea_jax.cascade.pipeline import run
from corea_jax.cascade.sweep import CascadeData
from corea_jax.cli.config import load_config
from corea_jax.demo.stages import BUNDLED_WARMUP
from corea_jax.errors import CoreaError
from corea_jax.scoring import stats

K, N = 3, 40


def _config(**slm) -> CascadeConfig:
    c = load_config("configs/demo.py:quick", []).cascade
    c.datasets.synthetic.limit = N
    c.slm.path = str(BUNDLED_WARMUP)
    c.slm.temperature = 1.0
    c.slm.samples = K
    c.slm.batch_size = 20
    c.grading.workers = 0
    for key, value in slm.items():
        c.slm[key] = value
    return CascadeConfig.from_config(c)


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("samples")
    summary = run(_config(), workdir)
    rows = [json.loads(x) for x in (workdir / "questions.jsonl").read_text().splitlines()]
    return workdir, summary, rows


def test_k_samples_per_question_and_one_llm_call_per_question(sampled):
    _, summary, rows = sampled
    assert len(rows) == N * K and summary["slm_samples_drawn"] == N * K
    assert summary["llm_calls"]["calls"] == N
    for q in range(N):
        block = rows[q * K : (q + 1) * K]
        assert [r["sample"] for r in block] == list(range(K))
        assert len({r["id"] for r in block}) == 1 and len({r["split"] for r in block}) == 1
        assert len({r["llm_text"] for r in block}) == 1  # the question's one LLM answer
    texts = [tuple(r["slm_text"] for r in rows[q * K : (q + 1) * K]) for q in range(N)]
    assert sum(len(set(t)) > 1 for t in texts) > N // 2  # sampled, not greedy
    group = summary["groups"]["synthetic"]
    assert group["samples_per_question"] == K and group["n_questions"] == N


def test_pass_at_1_is_mean_at_k_and_the_cascade_defers_per_sample(sampled):
    _, summary, rows = sampled
    test = [r for r in rows if r["split"] == "test"]
    slm_ok = np.array([r["slm_correct"] for r in test], float).reshape(-1, K)
    signal = summary["groups"]["synthetic"]["signals"]["verbalized"]
    assert signal["test_baselines"]["slm_only"]["pass_at_1"] == pytest.approx(
        slm_ok.mean(axis=1).mean()
    )
    choice = signal["choices"][0]
    conf = np.array([np.nan if r["confidence"] is None else r["confidence"] for r in test])
    defer = np.nan_to_num(conf, nan=0.0) < choice["tau"]
    llm_ok = np.array([r["llm_correct"] for r in test])
    by_hand = np.where(defer, llm_ok, slm_ok.ravel()).mean()
    assert choice["test"]["pass_at_1"] == pytest.approx(by_hand)
    cost = np.where(defer, [r["llm_cost"] for r in test], 0) + [r["slm_cost"] for r in test]
    assert choice["test"]["avg_cost"] == pytest.approx(cost.mean())
    # Expected cost over the SLM's sampling: a question's LLM cost counts for the share of its
    # samples deferred.
    assert choice["test"]["llm_fraction"] == pytest.approx(defer.mean())


def test_intervals_resample_questions_with_their_samples():
    rng = np.random.default_rng(0)
    q = 60
    # Questions differ a lot (each all right or all wrong): clustering widens the interval.
    slm = np.repeat(rng.random(q) < 0.5, K)
    data = CascadeData(np.full(q * K, 0.9), slm, np.ones(q * K, bool), np.ones(q * K),
                       np.ones(q * K))  # fmt: skip
    clustered = choice_intervals(data, 0.5, samples=K)["pass_at_1"]
    flat = choice_intervals(data, 0.5)["pass_at_1"]
    assert clustered["high"] - clustered["low"] > 1.4 * (flat["high"] - flat["low"])
    expected = stats.bootstrap(np.mean, slm.reshape(q, K).astype(float), seed=0)
    assert clustered["low"] == pytest.approx(expected.low)
    assert clustered["high"] == pytest.approx(expected.high)


def test_rerun_samples_nothing_and_greedy_samples_are_refused(sampled, tmp_path):
    workdir, summary, _ = sampled
    again = run(_config(), workdir)
    assert again["slm_samples_drawn"] == 0 and again["llm_calls"]["calls"] == 0
    assert again["groups"] == summary["groups"]
    with pytest.raises(CoreaError, match=r"slm\.samples=3 with slm\.temperature=0"):
        _config(temperature=0.0)
    with pytest.raises(CoreaError, match=r"tau\.fixed with slm\.samples=3"):
        c = load_config("configs/demo.py:quick", ["--config.cascade.tau.fixed=0.5"]).cascade
        c.slm.temperature, c.slm.samples = 1.0, K
        CascadeConfig.from_config(c)

"""`corea-jax compare`: the paper's table, every row present and equal to the per-signal sweeps;
probe and router signals fitted inside the cascade; router cost accounting by hand."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from corea_jax import cli
from corea_jax.cascade.compare import PAPER_SYSTEMS, SLM_ROWS, CompareConfig
from corea_jax.cascade.compare import run as compare_run
from corea_jax.cli.config import load_config
from corea_jax.demo.stages import BUNDLED_WARMUP
from corea_jax.errors import CoreaError

pytestmark = pytest.mark.usefixtures("shared_data")

ROWS = ["LLM", *SLM_ROWS.values(), *(s for s, _, _ in PAPER_SYSTEMS)]


def _warm_start_config(n: int = 80) -> CompareConfig:
    """Every SLM is the demo's bundled warm start (right on about half of the synthetic task's
    questions), so probe and router have both classes to learn from."""
    c = load_config("configs/compare_ood_math.py:smoke", [])
    for name in c.slms:
        c.slms[name] = str(BUNDLED_WARMUP)
    e = c.cascade
    e.datasets = {"synthetic": dict(reader="synthetic", path="", split="test", limit=n)}
    e.slm.scratch.enabled = False
    e.slm.max_new_tokens = 80
    e.slm.batch_size = 40
    e.grading.workers = 0
    e.signals.folds = 3
    return CompareConfig.from_config(c)


@pytest.fixture(scope="module")
def warm_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("compare_warm")
    table = compare_run(_warm_start_config(), workdir)
    return workdir, table


def _questions(workdir, slm="original"):
    lines = (workdir / "slms" / slm / "questions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_every_row_present_and_equal_to_the_per_signal_sweep(warm_run):
    workdir, table = warm_run
    rows = [r for r in table["rows"] if r["group"] == "synthetic"]
    assert [r["system"] for r in rows] == ROWS
    # The same model under four names is one cascade run, with the signals of all its rows.
    assert sorted(p.name for p in (workdir / "slms").iterdir()) == ["original"]
    summary = json.loads((workdir / "slms" / "original" / "summary.json").read_text())
    assert summary["signals"] == ["verbalized", "avgprob", "probe", "router"]
    for system, _, signal in PAPER_SYSTEMS:
        row = next(r for r in rows if r["system"] == system)
        entry = summary["groups"]["synthetic"]["signals"][signal]
        choice = next(c for c in entry["choices"] if c["rule"] == "llm_pass")
        assert row["tau"] == choice["tau"]
        for key in ("pass_at_1", "avg_cost", "llm_fraction"):
            assert row[key] == choice["test"][key], (system, key)
        assert row["ece"] == entry["test_metrics"]["ece"]
        assert row["auroc"] == entry["test_metrics"]["auroc"]
        assert row["pass_at_1_low"] <= row["pass_at_1"] <= row["pass_at_1_high"]
    for name in ("compare.md", "compare.csv", "compare.json"):
        assert (workdir / name).stat().st_size > 0
    md = (workdir / "compare.md").read_text()
    assert all(f"| {s} |" in md for s in ROWS) and "SIMULATED" in md


def test_probe_and_router_are_fitted_on_the_calibration_split_and_score_every_question(warm_run):
    workdir, _ = warm_run
    summary = json.loads((workdir / "slms" / "original" / "summary.json").read_text())
    for signal in ("probe", "router"):
        fit = summary["fitted_signals"][signal]
        assert fit["fitted"], fit["note"]
        assert fit["n_train"] == summary["groups"]["synthetic"]["n_calibration"]
        assert (workdir / "slms" / "original" / "probes" / f"{signal}.json").exists()
    rows = _questions(workdir)
    for signal in ("probe", "router"):
        scores = np.array([r[signal] for r in rows], float)
        assert np.all((scores > 0) & (scores < 1))
        assert len(np.unique(scores)) > len(rows) // 2  # continuous, not a handful of values


def test_router_cost_and_cascade_by_hand(warm_run):
    """A routed-away question pays the SLM's prefill and the LLM; a kept one the whole SLM."""
    workdir, table = warm_run
    rows = [r for r in _questions(workdir) if r["split"] == "test"]
    for system, signal in (("Router+RLVR-SLM", "router"), ("RLVR-SLM-Probe", "probe")):
        row = next(r for r in table["rows"] if r["system"] == system)
        score = np.array([r[signal] for r in rows], float)
        defer = score < row["tau"]
        slm_ok = np.array([r["slm_correct"] for r in rows])
        llm_ok = np.array([r["llm_correct"] for r in rows])
        slm, llm = (np.array([r[k] for r in rows]) for k in ("slm_cost", "llm_cost"))
        prefill = np.array([r["slm_prefill_cost"] for r in rows])
        assert np.all(prefill < slm)
        kept_cost = prefill if signal == "router" else slm
        cost = np.where(defer, kept_cost + llm, slm).mean()
        assert row["avg_cost"] == pytest.approx(cost)
        assert row["pass_at_1"] == pytest.approx(np.where(defer, llm_ok, slm_ok).mean())
        assert row["llm_fraction"] == pytest.approx(defer.mean())


def test_rerun_reuses_answers_and_probes_and_a_probe_for_another_model_is_refused(
    warm_run, tmp_path, capsys
):
    workdir, table = warm_run
    again = compare_run(_warm_start_config(), workdir)
    assert again == table
    summary = json.loads((workdir / "slms" / "original" / "summary.json").read_text())
    assert summary["llm_calls"]["calls"] == 0 and summary["slm_samples_drawn"] == 0
    assert summary["fitted_signals"]["probe"]["reused"]

    # The fitted probe pointed at from a cascade whose SLM is another (random) model.
    probes = tmp_path / "probes"
    shutil.copytree(workdir / "slms" / "original" / "probes", probes)
    argv = ["cascade", "--config=configs/eval_ood_math.py:smoke", f"--workdir={tmp_path / 'c'}",
            "--config.grading.workers=0", "--config.signals.use=('verbalized','probe')",
            f"--config.signals.probe_dir={probes}"]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("corea-jax: error: probe ") and "was fitted for model" in err


def test_compare_smoke_config_runs_every_row_and_asks_the_llm_once(tmp_path, capsys):
    argv = ["compare", "--config=configs/compare_ood_math.py:smoke", f"--workdir={tmp_path}",
            "--config.cascade.grading.workers=0"]  # fmt: skip
    assert cli.main(argv) == 0
    table = json.loads((tmp_path / "compare.json").read_text())
    assert sorted(table["groups"]) == ["all", "gsm8k", "math500", "olympiadbench"]
    for group in table["groups"]:
        assert [r["system"] for r in table["rows"] if r["group"] == group] == ROWS
    calls = [
        json.loads((tmp_path / "slms" / name / "summary.json").read_text())["llm_calls"]["calls"]
        for name in ("original", "rlvr", "brier", "corea")
    ]
    assert calls[0] == 12 and calls[1:] == [0, 0, 0]  # one cache for every SLM
    # The random SLM is never right: the probe cannot be fitted, and the row says why.
    probe = next(r for r in table["rows"] if r["system"] == "RLVR-SLM-Probe")
    assert probe["pass_at_1"] is None and "not fitted" in probe["note"]


def test_compare_config_errors_are_one_line():
    c = load_config("configs/compare_ood_math.py", [])
    with pytest.raises(CoreaError, match=r"slms\.brier: empty; set --config\.slms\.brier="):
        CompareConfig.from_config(c)
    c = load_config("configs/compare_ood_math.py:smoke", [])
    c.systems = (("X", "nobody", "verbalized"),)
    with pytest.raises(CoreaError, match="uses SLM 'nobody'"):
        CompareConfig.from_config(c)
    c.systems = (("X", "rlvr", "vibes"),)
    with pytest.raises(CoreaError, match="signal 'vibes'"):
        CompareConfig.from_config(c)
    bad = load_config("configs/compare_ood_math.py:smoke", ["--config.cascade.signals.use=('x',)"])
    with pytest.raises(CoreaError, match="signals.use: unknown signal 'x'"):
        CompareConfig.from_config(bad)

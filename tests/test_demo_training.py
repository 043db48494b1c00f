"""The demo's reading of the GRPO runs' diagnostics and its validation objective, by hand."""

import json

import numpy as np
import pytest

from corea_jax.demo import training, tuning


def _steps():
    # Level 1x1 logged on even steps only; level 3x3 on every step, its confidence falling.
    out = []
    for s in range(1, 41):
        m = {"step": s, "accuracy": 0.5, "confidence_mean": 0.9 - s / 100,
             "batch_auroc": 0.5 + s / 100, "confidence_group_sd": 0.2,
             "groups_all_correct": 0.25, "groups_all_wrong": 0.125, "batch_ece": 0.3,
             "level/3x3/confidence": 1.0 - s / 40, "level/3x3/accuracy": 0.25}  # fmt: skip
        if s % 2 == 0:
            m |= {"level/1x1/confidence": 0.9, "level/1x1/accuracy": 1.0}
        out.append(m)
    return out


def test_window_means_and_level_curves(tmp_path):
    steps = _steps()
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps(m) + "\n" for m in steps) + json.dumps({"step": 40, "eval/x": 1}) + "\n"
    )
    assert training.read_metrics(tmp_path) == steps  # the evaluation-only line is dropped
    w = training.window_means(steps, window=10)
    assert w["first"]["confidence_mean"] == pytest.approx(
        np.mean([0.9 - s / 100 for s in range(1, 11)])
    )
    assert w["last"]["batch_auroc"] == pytest.approx(
        np.mean([0.5 + s / 100 for s in range(31, 41)])
    )
    curves = training.level_curves(steps)
    assert set(curves) == {"1x1", "3x3"}
    assert np.isnan(curves["1x1"]["confidence"][0]) and curves["1x1"]["confidence"][1] == 0.9
    smoothed = training.smooth(curves["1x1"]["confidence"], window=3)
    assert np.isnan(smoothed[0]) and smoothed[1:] == pytest.approx(0.9)  # NaN steps skipped
    summary = training.training_summary({"corea-s0": tmp_path})["corea-s0"]
    assert summary["steps"] == 40
    last = summary["levels_last"]["3x3"]
    assert last["accuracy"] == 0.25
    assert last["confidence"] == pytest.approx(np.mean([1.0 - s / 40 for s in range(11, 41)]))


def test_the_brier_objective_picks_the_best_score_within_two_points_of_the_best_pass():
    scores = {
        "5e-05,none,1": {"pass@1": 0.653, "brier": 0.285, "reward": 1.33},
        "5e-05,none,2": {"pass@1": 0.640, "brier": 0.273, "reward": 1.04},  # 1.3 points below
        "5e-05,none,5": {"pass@1": 0.125, "brier": 0.022, "reward": 0.02},  # collapsed: out
        "5e-05,none,3": {"pass@1": 0.632, "brier": 0.200, "reward": 0.60},  # 2.1 points: out
    }
    _, best = tuning.OBJECTIVES["brier"]
    assert best(scores) == "5e-05,none,2"
    _, by_reward = tuning.OBJECTIVES["reward"]
    assert by_reward(scores) == "5e-05,none,1"
    assert tuning.candidate_key(5e-5, "none", 2.0) == "5e-05,none,2"
    assert tuning.run_name("corea", 5e-5, "group", 1.0) == "corea-lr5e-05"  # earlier runs' names
    assert tuning.run_name("corea", 5e-5, "none", 5.0) == "corea-lr5e-05-std_none-w5"


def test_a_reward_without_a_calibration_term_is_searched_at_one_weight():
    from pathlib import Path

    from corea_jax.cli.config import load_config
    from corea_jax.demo import DemoConfig

    overrides = ["policies=('rlvr','corea_split')", "tune.calibration_weights=(1.0,5.0)",
                 "tune.learning_rates=(1e-4,)", "tune.std_scalings=('none',)"]  # fmt: skip
    repo = Path(__file__).resolve().parents[1]
    config = DemoConfig.from_config(load_config(f"{repo}/configs/demo.py", overrides))
    assert tuning.candidates(config) == [
        ("rlvr", 1e-4, "none", 1.0),
        ("corea_split", 1e-4, "none", 1.0),
        ("corea_split", 1e-4, "none", 5.0),
    ]

"""Intervals of a cascade's operating point: the points are the sweep's, the paired difference
to LLM-only is narrower than the separate intervals, and the report prints them."""

import numpy as np
import pytest

from corea_jax.cascade.intervals import choice_intervals, interval_line
from corea_jax.cascade.sweep import CascadeData, evaluate_tau, sweep_thresholds


def _data(seed=0, n=400):
    rng = np.random.default_rng(seed)
    conf = rng.random(n)
    slm = rng.random(n) < conf  # confident answers are the right ones
    llm = rng.random(n) < 0.85
    return CascadeData(conf, slm, llm, np.full(n, 1e-5), np.full(n, 1e-4))


def test_points_are_the_sweeps_and_intervals_bracket_them():
    data = _data()
    out = choice_intervals(data, 0.6)
    point = evaluate_tau(data, 0.6)
    assert out["pass_at_1"]["point"] == pytest.approx(point.pass_at_1)
    assert out["llm_fraction"]["point"] == pytest.approx(point.llm_fraction)
    llm_only = sweep_thresholds(data).llm_only  # the LLM alone (no SLM cost)
    assert out["cost_vs_llm"]["point"] == pytest.approx(point.avg_cost / llm_only.avg_cost - 1)
    assert out["pass_vs_llm"]["point"] == pytest.approx(point.pass_at_1 - llm_only.pass_at_1)
    for iv in out.values():
        assert iv["low"] <= iv["point"] <= iv["high"]
    # paired: much narrower than the cascade's own pass@1 interval
    width = lambda iv: iv["high"] - iv["low"]  # noqa: E731
    assert width(out["pass_vs_llm"]) < width(out["pass_at_1"])
    line = interval_line("llm_pass", out)
    assert line.startswith("- tau by llm_pass: pass@1 ") and "points" in line
    assert choice_intervals(data, float("nan")) == {}

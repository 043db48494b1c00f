"""The cascade report: the Markdown table's numbers and the PNG files."""

import numpy as np
import pytest

from corea_jax.cascade.report import plot_pass_vs_cost, plot_vs_tau, summary_table, write_report
from corea_jax.cascade.sweep import CascadeData, report_on_test, select_tau, sweep_thresholds

PNG = b"\x89PNG\r\n\x1a\n"


def table() -> CascadeData:
    # The hand table of test_cascade_sweep: SLM 60% at 1 per question, LLM 80% at 10.
    return CascadeData(
        confidence=np.array([0.9, 0.3, np.nan, 0.6, 0.3]),
        slm_correct=np.array([1, 0, 0, 1, 1], bool),
        llm_correct=np.array([1, 1, 1, 0, 1], bool),
        slm_cost=np.full(5, 0.001),
        llm_cost=np.full(5, 0.01),
    )


def test_summary_table_rows_hold_the_hand_values():
    data = table()
    choice = report_on_test(select_tau("llm_pass", data), data)  # tau 0.8: 80% at 0.009
    text = summary_table(sweep_thresholds(data), [choice], title="hand table")
    lines = text.splitlines()
    assert lines[0] == "### hand table"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ")}
    assert rows["SLM only"] == "| SLM only |  | 60.0 | 1.00 | -90.0% | 0.0 |"
    assert rows["LLM only"] == "| LLM only |  | 80.0 | 10.00 | +0.0% | 100.0 |"
    assert rows["oracle deferral"] == "| oracle deferral |  | 100.0 | 5.00 | -50.0% | 40.0 |"
    cascade = rows["cascade, tau by llm_pass"]
    assert cascade == "| cascade, tau by llm_pass | 0.8 | 80.0 | 9.00 | -10.0% | 80.0 |"
    # Random deferral of 80%: 0.2 * 60 + 0.8 * 80 = 76%, at 1 + 0.8 * 10 = 9 per 1k.
    random = rows["random deferral, same LLM%"]
    assert random == "| random deferral, same LLM% |  | 76.0 | 9.00 | -10.0% | 80.0 |"


def test_plots_are_written_as_png(tmp_path):
    data = table()
    sweep = sweep_thresholds(data)
    choice = report_on_test(select_tau("within_llm", data, max_drop_points=5), data)
    for plot, name in ((plot_vs_tau, "tau.png"), (plot_pass_vs_cost, "cost.png")):
        path = plot(sweep, tmp_path / "plots" / name, [choice], title="t")
        assert path.read_bytes()[:8] == PNG


def test_write_report_with_reliability_diagrams(tmp_path):
    pytest.importorskip("corea_jax.scoring.metrics")
    rng = np.random.default_rng(0)
    q = 400
    conf = rng.choice([0.2, 0.5, 0.8, 0.95, np.nan], q)
    data = CascadeData(
        confidence=conf,
        slm_correct=rng.random(q) < np.nan_to_num(conf, nan=0.3),
        llm_correct=rng.random(q) < 0.8,
        slm_cost=rng.uniform(0.0005, 0.001, q),
        llm_cost=rng.uniform(0.004, 0.008, q),
    )
    cal, test = data.subset(np.arange(q) < 200), data.subset(np.arange(q) >= 200)
    choices = [
        report_on_test(select_tau(rule, cal, **options), test)
        for rule, options in (("llm_pass", {}), ("budget", {"budget": 0.5, "relative": True}))
    ]
    avgprob = rng.uniform(0.3, 1.0, 200)
    paths = write_report(
        tmp_path / "report",
        test,
        choices,
        title="synthetic",
        reliability={
            "verbalized": (test.confidence, test.slm_correct),
            "AvgProb": (avgprob, test.slm_correct),
        },
    )
    assert set(paths) == {"vs_tau", "pass_vs_cost", "reliability", "summary"}
    for key in ("vs_tau", "pass_vs_cost", "reliability"):
        assert paths[key].read_bytes()[:8] == PNG
    summary = paths["summary"].read_text()
    assert "tau by llm_pass" in summary and "budget(0.5 x LLM-only)" in summary
    assert "![reliability](reliability.png)" in summary

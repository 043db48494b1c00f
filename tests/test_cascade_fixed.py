"""The cascade at a fixed tau (`--config.tau.fixed`): the LLM is asked only for the questions
the SLM defers, costs and accuracy add up by hand, and the report says what was not measured."""

import json

import numpy as np
import pytest

from corea_jax import cli
from corea_jax.cascade.fixed import deferred, fixed_point, fixed_rows
from corea_jax.cascade.settings import CascadeConfig, LLMConfig, TauConfig
from corea_jax.cascade.slm_answers import QuestionSource, SLMConfig
from corea_jax.data import Record

FAST = ["--config.grading.workers=0"]


def _slm_row(confidence, correct, tokens=(10, 20)):
    return {"confidence": confidence, "correct": correct, "answer": "a", "format_ok": True,
            "prompt_tokens": tokens[0], "completion_tokens": tokens[1], "finish_reason": "stop",
            "text": "t"}  # fmt: skip


def _llm_row(correct, tokens=(100, 200)):
    return {"answer": "b", "correct": correct, "prompt_tokens": tokens[0],
            "completion_tokens": tokens[1], "usage_source": "api", "error": None,
            "text": "u"}  # fmt: skip


def test_only_deferred_questions_reach_the_llm_and_the_figures_add_up():
    cfg = CascadeConfig(
        datasets=(QuestionSource("d", "synthetic"),),
        tau=TauConfig(fixed=0.5),
        prices=(("slm", 1.0, 2.0), ("llm", 10.0, 20.0)),
        slm=SLMConfig(price_name="slm"),
        llm=LLMConfig(model="llm"),
    )
    records = tuple(Record(f"q{i}", f"question {i}", str(i), "numeric") for i in range(4))
    slm = {"d": [_slm_row(0.9, True), _slm_row(0.2, False), _slm_row(None, False),
                 _slm_row(0.5, True)]}  # fmt: skip
    defer = deferred(cfg, slm)
    # 0.2 < 0.5 and an invalid confidence (read as 0) defer; 0.5 is not below tau
    np.testing.assert_array_equal(defer["d"], [False, True, True, False])
    llm = {"d": [_llm_row(True), _llm_row(False)]}  # the two deferred questions, in order
    rows = fixed_rows(cfg, {"d": (records, None)}, slm, defer, llm)
    assert [r["deferred"] for r in rows] == [False, True, True, False]
    assert rows[0]["llm_answer"] is None and rows[1]["llm_answer"] == "b"
    point = fixed_point(rows)
    slm_cost = (10 * 1.0 + 20 * 2.0) / 1e6
    llm_cost = (100 * 10.0 + 200 * 20.0) / 1e6
    assert point["avg_cost"] == pytest.approx(slm_cost + 2 * llm_cost / 4)
    assert point["pass_at_1"] == pytest.approx(3 / 4)  # SLM right, LLM right, LLM wrong, SLM right
    assert point["llm_fraction"] == 0.5 and point["llm_calls"] == 2


@pytest.mark.usefixtures("shared_data")
@pytest.mark.parametrize("tau, calls", [(-1.0, 0), (2.0, 6)])
def test_cli_fixed_tau_calls_the_llm_only_for_deferred_questions(tmp_path, tau, calls):
    args = ["cascade", "--config=configs/eval_deepmath500.py:smoke", f"--workdir={tmp_path}",
            *FAST, f"--config.tau.fixed={tau}"]  # fmt: skip
    assert cli.main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mode"] == "fixed" and summary["tau"] == tau
    assert summary["llm_calls"]["calls"] == calls == summary["llm_calls"]["server_requests"]
    (group,) = summary["groups"].values()
    assert group["llm_calls"] == calls and group["n"] == 6
    report = (tmp_path / "report.md").read_text()
    assert "called only for the questions the SLM deferred" in report and "SIMULATED" in report
    rows = [json.loads(x) for x in (tmp_path / "questions.jsonl").read_text().splitlines()]
    assert sum(r["deferred"] for r in rows) == calls

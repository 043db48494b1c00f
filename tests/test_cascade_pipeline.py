"""The cascade and `evaluate --config` end to end through the CLI, on the `:smoke` configs.

A tiny random SLM answers a few real benchmark questions and the SIMULATED LLM (loopback server)
answers every question once; the behaviours checked are the wiring: every output is written,
a second run is answered entirely from the caches (no sampling, no LLM request), and user
errors are one line naming what is wrong.
"""

import csv
import json

import pytest

from corea_jax import cli

pytestmark = pytest.mark.usefixtures("shared_data")


# Grading in-process spares each run a worker start-up (the answers here are a few short strings).
FAST = ["--config.grading.workers=0"]


def _cascade(config, workdir, *extra):
    args = ["cascade", f"--config=configs/{config}", f"--workdir={workdir}", *FAST, *extra]
    return cli.main(args)


@pytest.fixture(scope="module")
def deepmath_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("deepmath")
    assert _cascade("eval_deepmath500.py:smoke", workdir) == 0
    first = {
        "summary": json.loads((workdir / "summary.json").read_text()),
        "questions": (workdir / "questions.jsonl").read_text(),
    }
    return workdir, first


def test_cascade_writes_questions_summary_and_report(deepmath_run):
    workdir, first = deepmath_run
    rows = [json.loads(line) for line in first["questions"].splitlines()]
    assert len(rows) == 6 and {r["dataset"] for r in rows} == {"deepmath500"}
    assert {r["split"] for r in rows} == {"calibration", "test"}
    for r in rows:
        assert r["slm_cost"] > 0 and r["llm_cost"] > 0
        # Not synthetic: no reference trace, the stub reply (llm.simulated_reply's fallback).
        assert r["llm_text"].startswith("<think>simulated</think>")
        # The simulated LLM is counted with the SLM's tokenizer (llm.usage "auto").
        assert r["slm_prompt_tokens"] > 0 and r["llm_usage_source"] == "slm_tokenizer"
        # Sent the SLM's own messages: the same prompt, the same count.
        assert r["llm_prompt_tokens"] == r["slm_prompt_tokens"]
    summary = first["summary"]
    assert summary["simulated_llm"] is True
    assert summary["billing"] == {"llm_messages": "slm", "llm_usage": "slm",
                                  "llm_simulated_reply": "trace"}  # fmt: skip
    cost = summary["groups"]["deepmath500"]["cost_per_question"]
    test = [r for r in rows if r["split"] == "test"]
    assert cost["llm_only"] == pytest.approx(sum(r["llm_cost"] for r in test) / len(test))
    assert cost["slm_vs_llm"] == pytest.approx(cost["slm_only"] / cost["llm_only"])
    assert summary["llm_calls"]["calls"] == 6 and summary["slm_samples_drawn"] == 6
    signals = summary["groups"]["deepmath500"]["signals"]
    assert set(signals) == {"verbalized", "avgprob"}
    rules = [c["rule"] for c in signals["verbalized"]["choices"]]
    assert rules[0] == "llm_pass" and len(rules) == 3
    with (workdir / "summary.csv").open() as f:
        table = list(csv.DictReader(f))
    assert {t["system"] for t in table} == {"slm_only", "llm_only", "oracle", "cascade"}
    report = (workdir / "report.md").read_text()
    assert "SIMULATED" in report and "tau by llm_pass" in report
    assert "cost per question on the test split: SLM only USD" in report
    assert "SLM only / LLM only = " in report
    for png in ("pass_cost_llm_vs_tau.png", "pass_vs_cost.png", "reliability.png"):
        assert (workdir / "report" / "deepmath500" / png).stat().st_size > 1000


def test_second_run_samples_nothing_and_calls_no_llm(deepmath_run):
    workdir, first = deepmath_run
    assert _cascade("eval_deepmath500.py:smoke", workdir) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["slm_samples_drawn"] == 0
    assert summary["llm_calls"]["calls"] == 0 and summary["llm_calls"]["server_requests"] == 0
    assert summary["llm_calls"]["cache_hits"] == 6
    assert (workdir / "questions.jsonl").read_text() == first["questions"]


def test_evaluate_config_writes_per_dataset_metrics(deepmath_run, capsys):
    workdir, _ = deepmath_run
    args = ["evaluate", "--config=configs/eval_deepmath500.py:smoke", f"--workdir={workdir}", *FAST]
    assert cli.main(args) == 0
    metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
    assert metrics["slm_samples_drawn"] == 0  # the cascade's SLM answers are reused
    m = metrics["datasets"]["deepmath500"]
    assert m["n"] == 6 and {"pass@1", "ece", "auroc", "reliability"} <= set(m)
    assert (workdir / "eval" / "reliability.png").stat().st_size > 1000
    assert len((workdir / "eval" / "deepmath500.jsonl").read_text().splitlines()) == 6
    assert "deepmath500: 6 questions" in capsys.readouterr().out


def test_ood_configs_run_and_gpqa_without_a_path_is_skipped(deepmath_run, tmp_path, capsys):
    model = deepmath_run[0] / "scratch_model"
    reuse = ["--config.slm.scratch.enabled=false", f"--config.slm.path={model}"]
    assert _cascade("eval_ood_nonmath.py:smoke", tmp_path / "nonmath", *reuse) == 0
    assert "skipping gpqa" in capsys.readouterr().err
    groups = json.loads((tmp_path / "nonmath" / "summary.json").read_text())["groups"]
    assert set(groups) == {"commonsenseqa"}
    fewer = [f"--config.datasets.{name}.limit=2" for name in ("math500", "gsm8k", "olympiadbench")]
    assert _cascade("eval_ood_math.py:smoke", tmp_path / "math", *reuse, *fewer) == 0
    summary = json.loads((tmp_path / "math" / "summary.json").read_text())
    assert set(summary["groups"]) == {"math500", "gsm8k", "olympiadbench", "all"}
    assert summary["groups"]["all"]["n"] == 6
    assert (tmp_path / "math" / "report" / "all" / "pass_vs_cost.png").exists()


@pytest.mark.parametrize("command", ["cascade", "evaluate"])
def test_bad_dataset_path_is_a_one_line_error(tmp_path, capsys, command):
    bad = tmp_path / "missing" / "test.jsonl"
    args = [command, "--config=configs/eval_deepmath500.py:smoke", f"--workdir={tmp_path / 'w'}",
            f"--config.datasets.deepmath500.path={bad}"]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "datasets.deepmath500" in err
    assert not (tmp_path / "w" / "summary.json").exists()

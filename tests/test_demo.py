"""`corea-jax demo` end to end with tiny budgets: report, headline, resume."""

import json
from pathlib import Path

from corea_jax import cli

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    args = [
        "demo", f"--workdir={tmp_path}", f"--config={REPO}/configs/demo.py:quick",
        "--config.policies=('rlvr','corea')", "--config.warmup_steps=4",
        "--config.warmup_batch=8", "--config.train.train.steps=2",
        "--config.train.train.checkpoint_every=2", "--config.cascade.datasets.synthetic.limit=24",
    ]  # fmt: skip
    assert cli.main(args) == 0
    out = capsys.readouterr()
    report = (tmp_path / "report.md").read_text()
    assert "SIMULATED" in report
    assert "| rlvr |" in report and "| corea |" in report and "| brier |" not in report
    assert "| rlvr |" in out.out  # the headline table is printed at the end
    rows = json.loads((tmp_path / "headline.json").read_text())
    assert [r["policy"] for r in rows] == ["rlvr", "corea"]
    for r in rows:
        assert r["n_test"] > 0 and 0 <= r["llm_pass@1"] <= 1
    for preset in ("rlvr", "corea"):
        assert (tmp_path / "policies" / preset / "export" / "model.safetensors").exists()
        assert (tmp_path / "cascade" / preset / "report.md").exists()

    assert cli.main(args) == 0  # resume: nothing is trained or asked again
    out = capsys.readouterr()
    assert out.err.count("(done, reused)") == 3  # warm-up and both policies
    assert "LLM calls this run: 0" in out.err + out.out

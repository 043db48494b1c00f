"""`corea-jax demo` end to end with tiny budgets: report, headline, resume."""

import json
from pathlib import Path

import pytest

from corea_jax import cli
from corea_jax.cli import demo_run as demo
from corea_jax.cli.config import load_config
from corea_jax.errors import CoreaError

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    """The :quick demo from the bundled warm start, shrunk further; every artifact parses."""
    args = [
        "demo", f"--workdir={tmp_path}", f"--config={REPO}/configs/demo.py:quick",
        "--config.policies=('rlvr','corea')", "--config.rl.train.steps=2",
        "--config.rl.train.checkpoint_every=2", "--config.cascade.datasets.synthetic.limit=24",
    ]  # fmt: skip
    assert cli.main(args) == 0
    out = capsys.readouterr()
    assert "using " + str(demo.BUNDLED_WARMUP) in out.err
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
        cascade = tmp_path / "cascade" / preset
        assert (cascade / "report.md").exists()
        json.loads((cascade / "summary.json").read_text())
        rows = [json.loads(x) for x in (cascade / "questions.jsonl").read_text().splitlines()]
        assert len(rows) == 24
        for plot in ("reliability", "pass_vs_cost", "pass_cost_llm_vs_tau"):
            png = (cascade / "report" / "synthetic" / f"{plot}.png").read_bytes()
            assert png.startswith(b"\x89PNG")

    assert cli.main(args) == 0  # resume: nothing is trained or asked again
    out = capsys.readouterr()
    assert out.err.count("(done, reused)") == 3  # warm-up and both policies
    assert "LLM calls this run: 0" in out.err + out.out


def test_warmup_trains_from_scratch_and_records_its_settings(tmp_path, capsys):
    overrides = [
        "--config.warmup_model=", "--config.warmup_steps=3", "--config.warmup_batch=8",
        "--config.warmup_lr_warmup_steps=1", "--config.warmup_train_size=100",
    ]  # fmt: skip
    assert cli.main(["demo", f"--workdir={tmp_path}", "--warmup-only", *overrides]) == 0
    export = tmp_path / "warmup" / "export"
    assert f"warm start: {export}" in capsys.readouterr().out
    recorded = json.loads((export / "warmup.json").read_text())
    config = load_config(f"{REPO}/configs/demo.py", [o[len("--config.") :] for o in overrides])
    assert recorded == demo.warmup_settings(config) and recorded["steps"] == 3
    config.warmup_model = str(export)
    assert demo._bundled_warm_start(config) == export  # a given directory is used as it is


def test_bundled_warm_start_is_used_only_with_the_settings_that_made_it(tmp_path, capsys):
    config = load_config(f"{REPO}/configs/demo.py")
    assert demo._bundled_warm_start(config) == demo.BUNDLED_WARMUP  # the default config's
    config.warmup_steps += 1
    assert demo._bundled_warm_start(config) is None
    assert "made with other settings (steps)" in capsys.readouterr().err
    config.warmup_model = ""
    assert demo._bundled_warm_start(config) is None
    config.warmup_model = str(tmp_path)
    with pytest.raises(CoreaError, match="warmup_model: .*no config.json"):
        demo._bundled_warm_start(config)


def test_bundled_warm_start_is_a_model_directory_with_a_digit_splitting_tokenizer():
    from corea_jax.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(demo.BUNDLED_WARMUP)
    pieces = [tokenizer.decode([i]) for i in tokenizer("12 + 345")["input_ids"]]
    assert [p for p in pieces if p.strip().isdigit()] == list("12345")
    model = load_model(demo.BUNDLED_WARMUP)
    assert model.config.hidden_size == 128 and model.config.num_layers == 2


def test_demo_overrides_apply_to_the_default_config(tmp_path, capsys):
    args = ["demo", f"--workdir={tmp_path}", "--warmup-only", f"--config.warmup_model={tmp_path}"]
    assert cli.main(args) == 2
    assert "warmup_model:" in capsys.readouterr().err

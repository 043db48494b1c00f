"""`corea-jax demo` end to end with tiny budgets: report, headline, resume."""

import dataclasses
import json
from pathlib import Path

import pytest

from corea_jax import cli
from corea_jax.cli.config import load_config
from corea_jax.demo import DemoConfig
from corea_jax.demo import stages as demo
from corea_jax.errors import CoreaError

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    """The :quick demo from the bundled warm start, shrunk further; every artifact parses."""
    args = [
        "demo", f"--workdir={tmp_path}", f"--config={REPO}/configs/demo.py:quick",
        "--config.policies=('rlvr','corea')", "--config.rl.train.steps=2",
        "--config.rl.train.checkpoint_every=2", "--config.cascade.datasets.synthetic.limit=60",
        "--config.bootstrap=50",
    ]  # fmt: skip
    assert cli.main(args) == 0
    out = capsys.readouterr()
    assert "using " + str(demo.BUNDLED_WARMUP) in out.err
    report = (tmp_path / "report.md").read_text()
    assert "SIMULATED" in report and "## Seed table" in report and "## Greedy decoding" in report
    systems = ["SLM-Verb", "SLM-AvgProb", "RLVR-SLM-Verb", "RLVR-SLM-AvgProb", "RLVR-SLM-Probe",
               "Router+RLVR-SLM", "RLVR-SLM-Level lookup", "COREA",
               "COREA-SLM-AvgProb"]  # fmt: skip
    for system in systems:
        assert f"| {system} |" in report
    assert "| Brier-SLM-Verb |" not in report
    assert "| COREA |" in out.out  # the headline table is printed at the end
    experiment = json.loads((tmp_path / "experiment.json").read_text())
    assert [r["system"] for r in experiment["rows"]] == systems
    assert set(experiment["greedy"]) == {"warm", "rlvr-s0", "corea-s0"}
    for name in ("rlvr-s0", "corea-s0"):
        assert (tmp_path / "policies" / name / "export" / "model.safetensors").exists()
        cascade = tmp_path / "compare" / "slms" / name
        assert (cascade / "report.md").exists()
        summary = json.loads((cascade / "summary.json").read_text())
        assert summary["groups"]["synthetic"]["samples_per_question"] == 1
    for plot in ("risk_coverage", "corea_tau_band"):
        assert (tmp_path / "report" / f"{plot}.png").read_bytes().startswith(b"\x89PNG")
    assert experiment["peak_memory_gb"] > 0
    assert "## The cost regime" in report and "## The cascade at three LLM strengths" in report
    assert [s["name"] for s in experiment["strengths"]] == ["configured", "SLM+20", "SLM+10"]
    assert {c["slm"] for c in experiment["costs"]} == {"warm", "rlvr-s0", "corea-s0"}

    assert cli.main(args) == 0  # resume: nothing is trained or asked again
    out = capsys.readouterr()
    assert out.err.count("(done, reused)") == 3  # warm-up and both policies
    assert "LLM calls this run: 0" in out.err + out.out


def test_warmup_trains_from_scratch_and_records_its_settings(tmp_path, capsys):
    overrides = [
        "--config.warmup.model=", "--config.warmup.steps=3", "--config.warmup.batch=8",
        "--config.warmup.lr_warmup_steps=1", "--config.warmup.train_size=100",
    ]  # fmt: skip
    assert cli.main(["demo", f"--workdir={tmp_path}", "--warmup-only", *overrides]) == 0
    export = tmp_path / "warmup" / "export"
    assert f"warm start: {export}" in capsys.readouterr().out
    recorded = json.loads((export / "warmup.json").read_text())
    raw = load_config(f"{REPO}/configs/demo.py", [o[len("--config.") :] for o in overrides])
    config = DemoConfig.from_config(raw)
    assert recorded == demo.warmup_settings(config) and recorded["steps"] == 3
    given = _warmup(config, model=str(export))
    assert demo.bundled_warm_start(given) == export  # a given directory is used as it is


def _warmup(config, **fields):
    return dataclasses.replace(config, warmup=dataclasses.replace(config.warmup, **fields))


def test_bundled_warm_start_is_used_only_with_the_settings_that_made_it(tmp_path, capsys):
    config = DemoConfig.from_config(load_config(f"{REPO}/configs/demo.py"))
    assert demo.bundled_warm_start(config) == demo.BUNDLED_WARMUP  # the default config's
    assert demo.bundled_warm_start(_warmup(config, steps=config.warmup.steps + 1)) is None
    assert "made with other settings (steps)" in capsys.readouterr().err
    assert demo.bundled_warm_start(_warmup(config, model="")) is None
    with pytest.raises(CoreaError, match="warmup.model: .*no config.json"):
        demo.bundled_warm_start(_warmup(config, model=str(tmp_path)))


def test_bundled_warm_start_is_a_model_directory_with_a_digit_splitting_tokenizer():
    from corea_jax.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(demo.BUNDLED_WARMUP)
    pieces = [tokenizer.decode([i]) for i in tokenizer("12 + 345")["input_ids"]]
    assert [p for p in pieces if p.strip().isdigit()] == list("12345")
    model = load_model(demo.BUNDLED_WARMUP)
    assert model.config.hidden_size == 128 and model.config.num_layers == 2


def test_demo_overrides_apply_to_the_default_config(tmp_path, capsys):
    args = ["demo", f"--workdir={tmp_path}", "--warmup-only", f"--config.warmup.model={tmp_path}"]
    assert cli.main(args) == 2
    assert "warmup.model:" in capsys.readouterr().err


def test_tune_chooses_each_rewards_settings_on_validation(tmp_path, capsys):
    args = [
        "demo", f"--workdir={tmp_path}", f"--config={REPO}/configs/demo.py:tune",
        "--config.policies=('corea',)", "--config.rl.train.steps=1",
        "--config.rl.train.checkpoint_every=1", "--config.tune.learning_rates=(1e-4,)",
        "--config.tune.std_scalings=('group','none')", "--config.tune.questions=8",
        "--config.tune.calibration_weights=(1.0,)",
    ]  # fmt: skip
    assert cli.main(args) == 0
    out = json.loads((tmp_path / "tune.json").read_text())
    scores = out["results"]["corea"]
    assert set(scores) == {"0.0001,group,1", "0.0001,none,1"}
    top = max(s["pass@1"] for s in scores.values())  # the Brier objective, by hand
    eligible = [k for k, s in scores.items() if s["pass@1"] >= top - 0.02]
    lr, std, w = min(eligible, key=lambda k: scores[k]["brier"]).split(",")
    assert out["objective"] == "brier"
    assert out["chosen"] == {
        "corea": {"learning_rate": float(lr), "std_scaling": std, "calibration_weight": float(w)}
    }
    assert "validation" in (tmp_path / "tune.md").read_text()
    assert not (tmp_path / "compare").exists()  # no test question is read


def test_a_run_directory_started_with_other_settings_is_not_reused(tmp_path):
    """Re-running the demo in an old workdir after a setting changed (a learning rate chosen
    anew, say) must not report the old policy under the new setting."""
    config = DemoConfig.from_config(load_config(f"{REPO}/configs/demo.py"))
    spec = demo.policy_spec(config, demo.BUNDLED_WARMUP, "corea", 0)
    run_dir = tmp_path / "corea-s0"
    run_dir.mkdir()
    demo.check_run_settings(run_dir, spec)  # nothing started: fine
    (run_dir / "config.json").write_text(spec.config_dict().to_json())
    demo.check_run_settings(run_dir, spec)  # the same settings: resumed or reused
    faster = spec.replace(optim={"learning_rate": spec.run.optim.learning_rate * 2})
    with pytest.raises(CoreaError, match=r"corea-s0: trained with optim.learning_rate=.*fresh"):
        demo.check_run_settings(run_dir, faster)
    weight = spec.run.reward.calibration_weight
    heavier = spec.replace(reward={"calibration_weight": weight + 1})
    with pytest.raises(CoreaError, match=rf"trained with reward.calibration_weight={weight}"):
        demo.check_run_settings(run_dir, heavier)


def test_policies_are_derived_from_one_base_run():
    """Each policy's run differs from the base only where the demo says (dataclasses.replace)."""
    config = DemoConfig.from_config(load_config(f"{REPO}/configs/demo.py"))
    spec = demo.policy_spec(config, demo.BUNDLED_WARMUP, "brier", 2)
    assert spec.run.reward.preset == "brier" and spec.run.train.seed == 2
    assert spec.run.optim.learning_rate == config.learning_rates["brier"]
    assert spec.run.advantage.std_scaling == config.std_scalings["brier"]
    assert spec.model["path"] == str(demo.BUNDLED_WARMUP) and not spec.model["scratch"]["enabled"]
    assert spec.run.rollout == config.rl.run.rollout and spec.data == config.rl.data
    assert config.rl.run.train.seed == 0  # the base is untouched
    built = spec.config_dict()
    assert built.reward.preset == "brier" and built.model.path == str(demo.BUNDLED_WARMUP)
    sft = demo.warmup_spec(config)
    assert sft.run.train.mode == "sft" and sft.run.train.steps == config.warmup.steps
    assert sft.data["train_size"] == config.warmup.train_size


def test_a_misspelt_demo_key_is_a_one_line_error():
    raw = load_config(f"{REPO}/configs/demo.py")
    raw.unlock()
    raw.seed = 3  # a key the file does not define (the CLI's locked ConfigDict refuses it too)
    with pytest.raises(CoreaError, match="unknown config key seed"):
        DemoConfig.from_config(raw)
    raw = load_config(f"{REPO}/configs/demo.py", ["policies=('corea','nope')"])
    with pytest.raises(CoreaError, match="policies=.*nope"):
        DemoConfig.from_config(raw)

"""The training loop end to end: smoke config, resume after SIGKILL, SIGTERM, NaN, learning."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from corea_jax import cli
from corea_jax.models import safetensors_io

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "configs" / "smoke.py")


def _params(model_dir: Path) -> dict[str, np.ndarray]:
    return {k: np.array(v.open()) for k, v in safetensors_io.read_header(
        model_dir / "model.safetensors").items()}  # fmt: skip


def _train(workdir, *overrides, config=SMOKE):
    return cli.main(["train", f"--config={config}", f"--workdir={workdir}", *overrides])


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "tests") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_smoke_config_trains_checkpoints_and_exports(tmp_path):
    # From scratch nothing is correct or well-formed, so every group has zero reward variance
    # and no gradient; a length bonus gives the groups reward differences to learn from.
    assert _train(tmp_path / "run", "--config.reward.extra_term=reward_terms:length_bonus") == 0
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    for key in ("loss", "reward", "reward/calibration", "accuracy", "format_rate", "kl",
                "clip_fraction", "entropy", "zero_variance_groups", "time/rollout",
                "time/grading", "time/update", "tokens_per_s", "confidence_hist"):  # fmt: skip
        assert key in lines[0], key
    assert lines[-1]["eval/format_rate"] is not None  # the held-out evaluation ran
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["2", "3"]
    assert any(
        p.name.startswith("events.out.tfevents")
        for p in (tmp_path / "run" / "tensorboard").iterdir()
    )
    export = tmp_path / "run" / "export"
    assert (export / "tokenizer.json").exists()
    initial, final = _params(tmp_path / "run" / "initial_model"), _params(export)
    assert initial.keys() == final.keys()
    assert any(not np.array_equal(initial[k], final[k]) for k in initial)  # it learned something


def kill_and_resume(tmp_path, common, kill_at: int):
    """Trains straight, then again killed with SIGKILL once checkpoint `kill_at` exists and
    resumed; asserts both end with bitwise the same (changed) parameters. Returns the killed
    run's directory."""
    assert _train(tmp_path / "straight", *common) == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "corea_jax", "train", f"--config={SMOKE}", f"--workdir={killed}",
         *common],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        ckpts = killed / "checkpoints"
        if ckpts.exists() and any(p.name == str(kill_at) for p in ckpts.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "export").exists()
    assert _train(killed, *common) == 0
    straight, resumed = _params(tmp_path / "straight" / "export"), _params(killed / "export")
    initial = _params(killed / "initial_model")
    assert any(not np.array_equal(initial[k], straight[k]) for k in initial)
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
    return killed


def test_killed_run_resumes_to_the_same_parameters(tmp_path):
    # 8 training prompts, 2 per step: an epoch is 4 steps, so the kill lands near a boundary.
    common = ["--config.data.train_size=8", "--config.train.steps=7",
              "--config.train.checkpoint_every=1", "--config.optim.learning_rate=3e-3",
              "--config.reward.extra_term=reward_terms:length_bonus"]  # fmt: skip
    killed = kill_and_resume(tmp_path, common, kill_at=4)
    steps = [json.loads(x)["step"] for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 8))  # each step logged once

    # Stopping exactly at the end of epoch 1 (step 4) and resuming trains the remaining steps.
    boundary = tmp_path / "boundary"
    assert _train(boundary, *common, "--config.train.steps=4") == 0
    assert _train(boundary, *common) == 0
    resumed, straight = _params(boundary / "export"), _params(tmp_path / "straight" / "export")
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


def test_checkpoint_restores_onto_a_different_mesh(tmp_path, capsys):
    workdir = tmp_path / "run"
    common = ["--config.reward.extra_term=reward_terms:length_bonus", "--config.train.eval_every=0"]
    assert _train(workdir, *common, "--config.train.steps=2", "--config.mesh.shape=(1,8,1)") == 0
    assert _train(workdir, *common, "--config.train.steps=3", "--config.mesh.shape=(2,2,2)") == 0
    assert "resumed from checkpoint at step 2 (data position 4)" in capsys.readouterr().err
    steps = [json.loads(x)["step"] for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    meta = json.loads((workdir / "checkpoints" / "3" / "meta" / "metadata").read_text())
    assert meta["data_position"] == 6 and json.loads(meta["config"])["train"]["steps"] == 3
    # A resume that would change the data order is refused, naming the key.
    assert _train(workdir, *common, "--config.train.steps=4", "--config.train.seed=5") == 2
    assert "train.seed=0, this run has 5" in capsys.readouterr().err


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    workdir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "corea_jax", "train", f"--config={SMOKE}", f"--workdir={workdir}",
         "--config.train.steps=1000", "--config.train.checkpoint_every=1000"],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (
        metrics.exists() and metrics.read_text().count("\n") >= 2
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "SIGTERM" in err
    saved = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    assert saved and max(saved) >= 2


def test_non_finite_step_is_rejected_and_checkpoint_kept(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert _train(workdir, "--config.train.steps=2", "--config.train.checkpoint_every=1") == 0
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    rc = _train(
        workdir, "--config.train.steps=4", "--config.reward.extra_term=reward_terms:nan_reward"
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "step 2: non-finite loss" in err and "last checkpoint kept: 2" in err
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before


def test_user_reward_term_and_bad_spec(tmp_path, capsys):
    assert _train(tmp_path / "ok", "--config.train.steps=1",
                  "--config.reward.extra_term=reward_terms:length_bonus") == 0  # fmt: skip
    line = json.loads((tmp_path / "ok" / "metrics.jsonl").read_text().splitlines()[0])
    assert line["reward/extra"] > 0
    assert _train(tmp_path / "bad", "--config.reward.extra_term=nope") == 2
    assert "reward.extra_term 'nope'" in capsys.readouterr().err
    assert _train(tmp_path / "shape", "--config.train.steps=1",
                  "--config.reward.extra_term=reward_terms:wrong_shape") == 2  # fmt: skip
    assert "reward.extra_term wrong_shape: returned shape" in capsys.readouterr().err


@pytest.mark.slow
def test_rlvr_raises_the_reward_of_a_warmed_up_model(tmp_path):
    """A real learning signal: after a short SFT warm-up, GRPO with the RLVR reward raises the
    mean reward (mostly by producing the required format more often)."""
    sft = tmp_path / "sft"
    assert _train(sft, "--config.train.steps=40", "--config.train.prompts_per_step=32",
                  "--config.data.train_size=1000", "--config.train.checkpoint_every=40",
                  "--config.optim.learning_rate=3e-3", config=SMOKE + ":sft") == 0  # fmt: skip
    rl = tmp_path / "rl"
    assert _train(rl, "--config.model.scratch.enabled=false",
                  f"--config.model.path={sft / 'export'}", "--config.reward.preset=rlvr",
                  "--config.train.steps=16", "--config.train.prompts_per_step=8",
                  "--config.rollout.group_size=8", "--config.rollout.max_new_tokens=48",
                  "--config.optim.learning_rate=3e-4", "--config.data.train_size=1000",
                  "--config.train.checkpoint_every=16") == 0  # fmt: skip
    rewards = [json.loads(x)["reward"] for x in (rl / "metrics.jsonl").read_text().splitlines()]
    first, last = np.mean(rewards[:4]), np.mean(rewards[-4:])
    print(f"RLVR mean reward: first 4 steps {first:.3f}, last 4 steps {last:.3f}")
    assert last > first + 0.1


def test_confidence_spans_train_end_to_end_from_a_warm_start(tmp_path):
    """`--config.advantage.spans=confidence` through the CLI: from the demo's bundled SFT warm
    start the policy writes confidence tags, their tokens are found, and the update runs on
    [R, C] advantages; the per-step diagnostics are logged."""
    from corea_jax.demo.stages import BUNDLED_WARMUP

    rl = tmp_path / "rl"
    assert _train(rl, "--config.model.scratch.enabled=false", "--config.model.dtype=float32",
                  f"--config.model.path={BUNDLED_WARMUP}", "--config.advantage.spans=confidence",
                  "--config.advantage.confidence_baseline=outcome", "--config.train.steps=2",
                  "--config.train.prompts_per_step=4", "--config.rollout.max_new_tokens=64",
                  "--config.train.eval_every=0",
                  "--config.optim.learning_rate=1e-4") == 0  # fmt: skip
    lines = [json.loads(x) for x in (rl / "metrics.jsonl").read_text().splitlines()]
    first = lines[0]
    assert first["format_rate"] > 0 and first["confidence_span_tokens"] > 0
    for key in ("confidence_group_sd", "groups_all_correct", "groups_all_wrong", "batch_auroc",
                "zero_variance_groups/confidence"):  # fmt: skip
        assert key in first, key
    assert any(k.startswith("level/") and k.endswith("/confidence") for k in first)
    assert all(x["finite"] == 1.0 for x in lines)


def test_kl_penalty_to_the_frozen_initial_policy(tmp_path):
    args = ["--config.loss.beta=0.1", "--config.train.steps=3", "--config.train.eval_every=0",
            "--config.reward.extra_term=reward_terms:length_bonus",
            "--config.optim.learning_rate=3e-3"]  # fmt: skip
    assert _train(tmp_path / "kl", *args) == 0
    kl = [json.loads(x)["kl"] for x in (tmp_path / "kl" / "metrics.jsonl").read_text().splitlines()]
    assert abs(kl[0]) < 1e-6  # the first update starts from the reference itself
    assert kl[-1] > 1e-4  # then the policy moves away and the k3 estimate sees it


def test_missing_data_path_fails_before_any_model_work(tmp_path, capsys):
    rc = _train(tmp_path / "w", "--config.data.source=gsm8k", f"--config.data.path={tmp_path}/no")
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err == f"corea-jax: error: data.path: {tmp_path}/no: no such file or directory"
    assert not (tmp_path / "w").exists()


def test_a_checkpoint_that_is_not_the_configs_model_is_refused_before_loading(
    tmp_path, capsys, shared_data
):
    from tiny_models import make_jax_checkpoint

    model_dir = make_jax_checkpoint("qwen2", tmp_path / "tiny")
    data = shared_data / "deepmath" / "deepmath103k_subset.jsonl"
    args = ["train", "--config=configs/rlcc_qwen7b.py:corea", f"--workdir={tmp_path}/w",
            f"--config.model.path={model_dir}", f"--config.data.path={data}"]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("corea-jax: error: model.hf_id='Qwen/Qwen2.5-7B-Instruct': ")
    assert "config.json has" in err and len(err.splitlines()) == 1

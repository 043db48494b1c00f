"""Two local processes on loopback (gloo collectives) train like one process with two devices."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corea_jax.models import safetensors_io

REPO = Path(__file__).resolve().parents[1]
ARGS = [
    f"--config={REPO / 'configs' / 'smoke.py'}",
    "--config.train.eval_every=0",
    "--config.train.tensorboard=false",
    "--config.mesh.shape=(1,2,1)",
    "--config.reward.extra_term=reward_terms:length_bonus",
    "--config.optim.learning_rate=3e-3",
]


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = str(REPO / "tests") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _params(model_dir: Path) -> dict[str, np.ndarray]:
    header = safetensors_io.read_header(model_dir / "model.safetensors")
    return {k: np.array(v.open()) for k, v in header.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
    cmd = [sys.executable, "-m", "corea_jax", "train"]
    single = subprocess.run(
        [*cmd, *ARGS, f"--workdir={tmp_path / 'single'}"], env=_env(2),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                *cmd,
                *ARGS,
                f"--workdir={tmp_path / 'multi'}",
                f"--coordinator=127.0.0.1:{port}",
                "--num-processes=2",
                f"--process-id={i}",
            ],
            env=_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    for p in procs:
        try:
            _, err = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("the two-process run did not finish")
        assert p.returncode == 0, err[-3000:]
    ours, ref = _params(tmp_path / "multi" / "export"), _params(tmp_path / "single" / "export")
    initial = _params(tmp_path / "single" / "initial_model")
    assert any(not np.array_equal(initial[k], ref[k]) for k in ref)  # training moved them
    for k in ref:
        np.testing.assert_allclose(ours[k], ref[k], rtol=0, atol=1e-6, err_msg=k)
    # Metrics and checkpoints were written once, by process 0.
    lines = (tmp_path / "multi" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3

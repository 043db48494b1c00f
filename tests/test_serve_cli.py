"""`corea-jax serve` as a command: config, tau from a cascade summary, the demo path's error,
and the real engine end to end in a subprocess (tiny random model, simulated LLM on loopback),
drained by SIGTERM."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai
import pytest
from tiny_models import make_jax_checkpoint, make_tokenizer

from corea_jax.cli import main
from corea_jax.cli.config import load_config
from corea_jax.errors import CoreaError
from corea_jax.serving import ServeConfig, build_service, read_tau
from corea_jax.serving.protocol import parse_chat_request
from corea_jax.testing.llm_server import SimulatedLLMServer

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "serve.py")


def test_help_works(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    assert e.value.code == 0
    assert "OpenAI-compatible" in capsys.readouterr().out


def test_config_sections_are_typed_and_checked():
    config = ServeConfig.from_config(load_config(CONFIG, ["--config.engine.row_buckets=(4,)"]))
    assert config.engine.row_buckets == (4,) and config.server.upstream_failure == "fallback"
    demo = ServeConfig.from_config(load_config(f"{CONFIG}:demo,/some/dir"))
    # The layout `corea-jax demo` writes (corea_jax/demo/stages.py), its first seed by default
    assert demo.slm.path == "/some/dir/policies/corea-s0/export" and demo.llm.simulated
    assert demo.tau.summary == "/some/dir/compare/slms/corea-s0/summary.json"
    assert demo.llm.simulated_difficulty_decay == 0.025
    # tau was chosen on answers sampled at the demo's temperature: served at it by default
    limits = demo.server.limits(80)
    unnamed = parse_chat_request(b'{"messages": [{"role": "user", "content": "q"}]}', limits)
    named = parse_chat_request(b'{"messages": [{"role": "user", "content": "q"}], '
                               b'"temperature": 0}', limits)  # fmt: skip
    assert (unnamed.temperature, named.temperature) == (1.0, 0.0)
    with pytest.raises(CoreaError, match="server.default_temperature"):
        ServeConfig.from_config(load_config(CONFIG, ["--config.server.default_temperature=3.0"]))
    seed2 = ServeConfig.from_config(load_config(f"{CONFIG}:demo,/some/dir,2"))
    assert seed2.slm.path == "/some/dir/policies/corea-s2/export"
    with pytest.raises(CoreaError, match="server.upstream_failure"):
        ServeConfig.from_config(load_config(CONFIG, ["--config.server.upstream_failure=retry"]))


def test_the_demo_path_without_a_workdir_names_the_command_that_makes_it(tmp_path, capsys):
    missing = tmp_path / "no_demo"
    assert main(["serve", f"--config={CONFIG}:demo,{missing}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"corea-jax demo --workdir {missing}" in err


def _summary(path: Path, choices) -> Path:
    groups = {"synthetic": {"signals": {"verbalized": {"choices": choices}}}}
    path.write_text(json.dumps({"groups": groups}))
    return path


def test_tau_comes_from_the_rule_named_in_a_cascade_summary(tmp_path):
    path = _summary(tmp_path / "summary.json", [
        {"rule": "llm_pass", "tau": 0.845},
        {"rule": "within_llm(2 points)", "tau": 0.31},
    ])  # fmt: skip
    assert read_tau(path, "llm_pass")[0] == 0.845
    tau, source = read_tau(path, "within_llm")
    assert tau == 0.31 and "within_llm" in source and str(path) in source
    with pytest.raises(CoreaError, match="budget.*rules"):
        read_tau(path, "budget")
    with pytest.raises(CoreaError, match="groups"):
        read_tau(path, "llm_pass", group="gsm8k")
    with pytest.raises(CoreaError, match="not found"):
        read_tau(tmp_path / "nope.json", "llm_pass")


def test_a_missing_model_directory_is_one_clear_error(tmp_path):
    config = ServeConfig.from_config(load_config(CONFIG, [f"--config.slm.path={tmp_path}"]))
    with pytest.raises(CoreaError, match="no model directory"):
        build_service(config)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("slm")
    make_jax_checkpoint("qwen2", d)
    make_tokenizer(d)
    return d


def _policy(messages, params):
    del params
    return f"<answer>llm:{messages[-1]['content']}</answer>", 5, 3


@pytest.mark.slow
def test_served_end_to_end_and_drained_by_sigterm(model_dir):
    port = _free_port()
    # The upstream answers after 1 s, so requests are in flight when SIGTERM arrives.
    with SimulatedLLMServer(_policy, model="Qwen/Qwen2.5-32B-Instruct", latency_s=1.0) as llm:
        cmd = [
            sys.executable, "-m", "corea_jax", "serve", f"--config={CONFIG}", "--port", str(port),
            f"--config.slm.path={model_dir}", "--config.slm.system=",
            "--config.tau.value=0.5",  # a random model states no confidence: every answer defers
            f"--config.llm.base_url={llm.base_url}", "--config.llm.api_key_env=",
            "--config.engine.rows=4", "--config.engine.row_buckets=(4,)",
            "--config.engine.max_prompt_tokens=64", "--config.engine.prompt_buckets=()",
            "--config.engine.max_new_tokens=16", "--config.server.log_level=warning",
        ]  # fmt: skip
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 240
            while True:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "the server did not become ready"
                try:
                    with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                time.sleep(0.25)
            client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)

            def ask(i):
                return client.chat.completions.create(
                    model="corea-cascade",
                    messages=[{"role": "user", "content": f"question {i}"}],
                    max_tokens=8,
                )

            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(ask, i) for i in range(4)]
                time.sleep(0.5)  # the SLM has answered; the upstream is still thinking
                proc.send_signal(signal.SIGTERM)
                answers = [f.result(30) for f in futures]
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for i, r in enumerate(answers):
        meta = r.model_extra["corea"]
        assert meta["answered_by"] == "llm" and meta["slm"]["confidence_valid"] is False
        assert r.choices[0].message.content == f"<answer>llm:question {i}</answer>"
        assert r.usage.prompt_tokens == meta["slm"]["prompt_tokens"] + 5
    stderr = proc.stderr.read()
    assert "tau 0.5 from config" in stderr

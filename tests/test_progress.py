"""What a person watching a run sees: `corea_jax.progress` (plain lines off a terminal, a bar on
one, nothing when disabled), the figures the trainer and the LLM stage show, and no library
noise at the CLI's start (`corea_jax.cli.quiet_libraries`)."""

import io
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from corea_jax import cli
from corea_jax import progress as progress_lib
from corea_jax.progress import Progress, format_figure, progress, progress_mode


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def _auto(monkeypatch):
    monkeypatch.delenv(progress_lib.ENV, raising=False)


def lines_progress(total, clock, initial=0, desc="train", unit="step"):
    stream = io.StringIO()
    p = Progress(total, desc, unit, initial=initial, stream=stream, mode="lines", clock=clock)
    return p, stream


def test_lines_format_rate_eta_and_figures():
    clock = Clock()
    p, out = lines_progress(50, clock)
    clock.t += 6.0
    p.update(reward=0.4123, conf=0.73, acc=0.55)
    assert out.getvalue() == (
        "train: 1/50 step (2%), 6.00 s/step, 0:06 elapsed, ETA 4:54 | "
        "reward=0.412 conf=0.73 acc=0.55\n"
    )


def test_lines_every_tenth_of_the_total_and_at_the_end_without_carriage_returns():
    clock = Clock()
    p, out = lines_progress(50, clock)
    for i in range(50):
        clock.t += 1.0
        p.update(reward=float(i))
    p.close()
    lines = out.getvalue().splitlines()
    # The first update comes within 5 s of the start: no line; then each 10% (5 steps, 5 s).
    assert [line.split(" ")[1] for line in lines] == [f"{n}/50" for n in range(5, 51, 5)]
    assert "\r" not in out.getvalue()
    assert lines[-1] == "train: 50/50 step (100%), 1.00 step/s, 0:50 elapsed | reward=49"


def test_first_update_line_once_5_seconds_have_passed():
    clock = Clock()
    p, out = lines_progress(50, clock)
    clock.t += 6.0
    p.update()
    clock.t += 6.0
    p.update()  # 4%: not a further 10% and not 30 s
    assert [line.split(" ")[1] for line in out.getvalue().splitlines()] == ["1/50"]


def test_a_fast_stage_prints_only_its_last_line():
    clock = Clock()
    p, out = lines_progress(1000, clock, unit="question")
    for _ in range(1000):
        clock.t += 0.001
        p.update(cached=1)
    p.close()
    assert out.getvalue() == (
        "train: 1000/1000 question (100%), 1000 question/s, 0:01 elapsed | cached=1\n"
    )


def test_lines_every_30_seconds_when_the_count_moves_slowly():
    clock = Clock()
    p, out = lines_progress(1000, clock, unit="question")
    for _ in range(4):
        clock.t += 31.0
        p.update()
    assert len(out.getvalue().splitlines()) == 4
    clock.t += 6.0
    p.update()  # neither 10% nor 30 s since the last line
    assert len(out.getvalue().splitlines()) == 4


def test_close_writes_the_unwritten_end_once():
    clock = Clock()
    p, out = lines_progress(100, clock)
    clock.t += 5.0
    p.update()
    p.update()  # not due: 2% and no time passed
    p.close()
    p.close()
    p.update()  # after close: silent
    assert [line.split(" ")[1] for line in out.getvalue().splitlines()] == ["1/100", "2/100"]


def test_resumed_run_rate_and_eta_exclude_the_initial_units():
    clock = Clock()
    p, out = lines_progress(10, clock, initial=5)
    clock.t += 8.0
    p.update()
    assert out.getvalue() == "train: 6/10 step (60%), 8.00 s/step, 0:08 elapsed, ETA 0:32\n"


def test_unknown_total_has_no_percentage_or_eta():
    clock = Clock()
    p, out = lines_progress(None, clock, unit="batch")
    clock.t += 5.0
    p.update(60)
    assert out.getvalue() == "train: 60 batch, 12.00 batch/s, 0:05 elapsed\n"


def test_figures_persist_and_update_in_place():
    p, _ = lines_progress(10, Clock())
    p.update(reward=0.5, conf=0.9)
    p.update(0, conf=np.float32(0.25), hits=3)
    assert p.n == 1
    assert p.postfix() == "reward=0.5 conf=0.25 hits=3"


@pytest.mark.parametrize(
    "value, text",
    [(0.41, "0.41"), (0.73125, "0.731"), (12.345, "12.3"), (1234.5, "1234"), (7, "7"),
     (np.int64(3), "3"), (True, "True"), (float("nan"), "nan"), ("n/a", "n/a")],
)  # fmt: skip
def test_format_figure(value, text):
    assert format_figure(value) == text


@pytest.mark.parametrize("setting", ["0", "off", "false", "no"])
def test_disabled_by_env_writes_nothing(monkeypatch, setting):
    monkeypatch.setenv(progress_lib.ENV, setting)
    for stream in (io.StringIO(), Terminal()):
        with progress(5, "slm", "question", stream=stream) as p:
            for _ in range(5):
                p.update(acc=1.0)
            p.write("a message")
        assert stream.getvalue() == ""


def test_mode_follows_the_terminal_and_the_env(monkeypatch):
    assert progress_mode(io.StringIO()) == "lines"
    assert progress_mode(Terminal()) == "bar"
    monkeypatch.setenv(progress_lib.ENV, "lines")
    assert progress_mode(Terminal()) == "lines"
    monkeypatch.setenv(progress_lib.ENV, "typo")  # never stops a run: auto
    assert progress_mode(Terminal()) == "bar"


def test_bar_on_a_terminal_shows_count_rate_and_figures():
    stream = Terminal()
    with progress(4, "llm", "question", stream=stream) as p:
        for _ in range(4):
            p.update(cached=2, failed=0)
    text = stream.getvalue()
    assert "llm: 100%" in text and "4/4" in text and "question/s" in text
    assert "cached=2 failed=0" in text


def test_only_process_zero_shows_progress(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", types.SimpleNamespace(process_index=lambda: 1))
    stream = io.StringIO()
    with progress(3, "train", "step", stream=stream) as p:
        p.update(3)
    assert stream.getvalue() == ""
    monkeypatch.setitem(sys.modules, "jax", types.SimpleNamespace(process_index=lambda: 0))
    with progress(3, "train", "step", stream=stream) as p:
        p.update(3)
    assert stream.getvalue().startswith("train: 3/3 step (100%)")


# --- what the stages show


def test_train_bar_shows_reward_confidence_accuracy_and_the_last_evaluation():
    from corea_jax.rl.train import bar_figures

    metrics = {"reward": 0.4, "confidence_mean": 0.7, "accuracy": 0.5, "format_rate": 1.0,
               "loss": 0.1, "eval/pass@1": 0.6, "eval/ece": 0.2, "grad_norm": 3.0}  # fmt: skip
    assert bar_figures(metrics, "grpo") == {"reward": 0.4, "conf": 0.7, "acc": 0.5, "fmt": 1.0,
                                            "eval_acc": 0.6, "eval_ece": 0.2}  # fmt: skip
    assert bar_figures({"loss": 2.0, "nll": 9.0}, "sft") == {"loss": 2.0}


def test_llm_stage_counts_distinct_questions_and_cache_hits(tmp_path, capsys, monkeypatch):
    from corea_jax.cascade.llm_answers import answer_with_llm
    from corea_jax.cascade.settings import LLMConfig
    from corea_jax.data import synthetic

    monkeypatch.setenv(progress_lib.ENV, "lines")
    records = synthetic.make_split(synthetic.SyntheticTask(seed=0), "test", 12)
    questions = {"syn": (records, synthetic.SYNTHETIC_PROMPTS)}
    distinct = len({synthetic.SYNTHETIC_PROMPTS.user_text(r) for r in records})
    for cached in (0, distinct):  # the second run answers from the cache
        # usage="api": the simulated server's own usage (no SLM tokenizer in this test)
        llm = LLMConfig(simulated=True, usage="api")
        answer_with_llm(llm, questions, tmp_path / "c.sqlite", None)
        last = capsys.readouterr().err.splitlines()[-1]
        assert last.startswith(f"LLM Qwen/Qwen2.5-32B-Instruct (SIMULATED): {distinct}/{distinct}")
        assert last.endswith(f"| cached={cached} failed=0 faults=0")


# --- no library noise


def cpu_only_machine(root, vendors=("0x8086",), devices=()):
    for i, vendor in enumerate(vendors):
        d = root / f"sys/bus/pci/devices/0000:00:0{i}.0"
        d.mkdir(parents=True)
        (d / "vendor").write_text(vendor + "\n")
    for device in devices:
        (root / device).parent.mkdir(parents=True, exist_ok=True)
        (root / device).write_text("")
    return str(root)


@pytest.fixture
def with_libtpu(monkeypatch):
    real = cli.importlib.util.find_spec
    monkeypatch.setattr(
        cli.importlib.util, "find_spec",
        lambda name, *a: object() if name == "libtpu" else real(name, *a),
    )  # fmt: skip


def test_jax_defaults_to_cpu_only_where_it_would_end_there(tmp_path, with_libtpu):
    root = cpu_only_machine(tmp_path / "cpu")
    assert cli.jax_would_run_on_cpu({}, root)
    for env in ({"JAX_PLATFORMS": ""}, {"JAX_PLATFORMS": "tpu"}, {"JAX_FORCE_TPU_INIT": "1"},
                {"PJRT_NAMES_AND_LIBRARY_PATHS": "x:/lib.so"}):  # fmt: skip
        assert not cli.jax_would_run_on_cpu(env, root)
    assert not cli.jax_would_run_on_cpu({}, cpu_only_machine(tmp_path / "tpu", ("0x1ae0",)))
    assert not cli.jax_would_run_on_cpu({}, cpu_only_machine(tmp_path / "gpu", ("0x10de",)))
    for device in ("dev/nvidia0", "dev/kfd", "dev/accel0", "dev/vfio/0"):
        machine = cpu_only_machine(tmp_path / device.replace("/", "_"), devices=(device,))
        assert not cli.jax_would_run_on_cpu({}, machine)
    assert not cli.jax_would_run_on_cpu({}, str(tmp_path / "no_pci"))  # cannot tell: untouched


def test_without_libtpu_nothing_is_changed(tmp_path, monkeypatch):
    real = cli.importlib.util.find_spec
    monkeypatch.setattr(
        cli.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "libtpu" else real(name, *a),
    )
    assert not cli.jax_would_run_on_cpu({}, cpu_only_machine(tmp_path))


def test_quiet_libraries_keeps_what_the_user_set(monkeypatch):
    env = {"TRANSFORMERS_NO_ADVISORY_WARNINGS": "0", "JAX_PLATFORMS": "cuda"}
    cli.quiet_libraries(env)
    assert env == {"TRANSFORMERS_NO_ADVISORY_WARNINGS": "0", "JAX_PLATFORMS": "cuda"}
    env = {}
    cli.quiet_libraries(env)
    assert env["TRANSFORMERS_NO_ADVISORY_WARNINGS"] == "1"
    assert "JAX_PLATFORMS" not in env  # JAX is imported in this process: never touched


def test_cli_start_prints_no_library_notice():
    """What `corea-jax` does first, then what every command does (tokenizer, JAX backends), in a
    fresh process with the user's environment: neither library's notice reaches stderr."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_PLATFORMS", "TRANSFORMERS_NO_ADVISORY_WARNINGS")}  # fmt: skip
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # a GPU machine: take no memory
    code = (
        "from corea_jax import cli; cli.quiet_libraries(); import transformers, jax; jax.devices()"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for notice in ("PyTorch was not found", "Failed to find host bounds", "TPU_WORKER_HOSTNAMES"):
        assert notice not in done.stderr

"""corea_jax.progress: plain lines off a terminal, a bar on one, nothing when disabled."""

import io
import sys
import types

import numpy as np
import pytest

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
    clock.t += 2.0
    p.update(reward=0.4123, conf=0.73, acc=0.55)
    assert out.getvalue() == (
        "train: 1/50 step (2%), 2.00 s/step, 0:02 elapsed, ETA 1:38 | "
        "reward=0.412 conf=0.73 acc=0.55\n"
    )


def test_lines_every_tenth_of_the_total_and_at_the_end_without_carriage_returns():
    clock = Clock()
    p, out = lines_progress(50, clock)
    for i in range(50):
        clock.t += 0.5
        p.update(reward=float(i))
    p.close()
    lines = out.getvalue().splitlines()
    counts = [line.split(" ")[1] for line in lines]
    # The first update, then each 10% (every 5 steps); the end is the 100% line, not repeated.
    assert counts == ["1/50"] + [f"{n}/50" for n in range(5, 51, 5)]
    assert "\r" not in out.getvalue()
    assert lines[-1] == "train: 50/50 step (100%), 2.00 step/s, 0:25 elapsed | reward=49"


def test_lines_every_30_seconds_when_the_count_moves_slowly():
    clock = Clock()
    p, out = lines_progress(1000, clock, unit="question")
    for _ in range(4):
        clock.t += 31.0
        p.update()
    assert len(out.getvalue().splitlines()) == 4
    clock.t += 1.0
    p.update()  # neither 10% nor 30 s since the last line
    assert len(out.getvalue().splitlines()) == 4


def test_close_writes_the_unwritten_end_once():
    clock = Clock()
    p, out = lines_progress(100, clock)
    p.update()
    p.update()  # not due: 2% and no time passed
    p.close()
    p.close()
    p.update()  # after close: silent
    assert [line.split(" ")[1] for line in out.getvalue().splitlines()] == ["1/100", "2/100"]


def test_resumed_run_rate_and_eta_exclude_the_initial_units():
    clock = Clock()
    p, out = lines_progress(10, clock, initial=5)
    clock.t += 4.0
    p.update()
    assert out.getvalue().startswith("train: 6/10 step (60%), 4.00 s/step, 0:04 elapsed, ETA 0:16")


def test_unknown_total_has_no_percentage_or_eta():
    clock = Clock()
    p, out = lines_progress(None, clock, unit="batch")
    clock.t += 0.25
    p.update(3)
    assert out.getvalue() == "train: 3 batch, 12.00 batch/s, 0:00 elapsed\n"


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

"""Progress of a long stage on stderr: a bar with rate, ETA and the figures that matter.

    with progress(total=steps, desc="train (grpo)", unit="step") as bar:
        for step in ...:
            ...
            bar.update(reward=0.41, conf=0.73, acc=0.55)

What prints depends on where stderr goes and on `COREA_PROGRESS`:

- a terminal (`auto`, the default): a `tqdm` bar, redrawn in place at most twice a second,
      train (grpo):  24%|██▍     | 12/50 [00:37<01:58,  3.10s/step, reward=0.41 conf=0.73 acc=0.55]
- not a terminal (CI, a log file, pytest), or `COREA_PROGRESS=lines`: plain lines, no carriage
  returns: one at the first update (the rate is then known), at each further 10% of the total,
  or when 30 s have passed since the last line, but none within 5 s of the last one (or of the
  start); and one at the end (so a stage of a few seconds prints just that one),
      train (grpo): 12/50 step (24%), 3.10 s/step, 0:37 elapsed, ETA 1:58 | reward=0.41 conf=0.73
  so a long stage writes a line at most every 30 s and at least every 10%, and a stage that is
  slow to start says after its first unit how fast it goes;
- `COREA_PROGRESS=0` (or `off`, `false`, `no`): nothing.

In a multi-process run only process 0 shows progress (as only it writes metrics: see
`corea_jax.rl.metric_writers`); that is read from `jax.process_index()` only when JAX is already
imported, so this module never imports or initialises JAX itself.

Rate and ETA: the bar's are tqdm's (an exponential moving average); the lines' are the average
since the stage started (`initial` excluded, so a resumed run does not count work it skipped).
Figures are formatted to 3 significant digits (integers as they are); they persist between
updates until given again.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

ENV = "COREA_PROGRESS"
LINE_EVERY_FRACTION = 0.1  # non-terminal mode: a line per further 10% of the total...
LINE_EVERY_SECONDS = 30.0  # ...or per 30 s without one, whichever comes first,
LINE_MIN_SECONDS = 5.0  # but never two lines within 5 s (the last one excepted)
_OFF = ("0", "off", "false", "no")


def progress_mode(stream: TextIO) -> str:
    """The mode, "bar", "lines" or "off", from `COREA_PROGRESS` and whether `stream` is a tty. Any
    value other than the off and `lines` ones means auto: a typo never stops a run."""
    setting = os.environ.get(ENV, "auto").strip().lower()
    if setting in _OFF:
        return "off"
    if setting == "lines":
        return "lines"
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


def is_primary_process() -> bool:
    """False on every process but 0 of a multi-process JAX run (JAX is not imported here)."""
    jax = sys.modules.get("jax")
    return jax is None or jax.process_index() == 0


def format_figure(value) -> str:
    """3 significant digits for reals (0.41, 0.731, 12.3, 1234; numpy's too), integers and text
    as given."""
    if isinstance(value, bool | numbers.Integral) or not isinstance(value, numbers.Real):
        return str(value)
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _rate(done: float, seconds: float, unit: str) -> str:
    if done <= 0 or seconds <= 0:
        return f"? {unit}/s"
    per_second = done / seconds
    rate, per = (per_second, f"{unit}/s") if per_second >= 1 else (1 / per_second, f"s/{unit}")
    return f"{rate:.0f} {per}" if rate >= 100 else f"{rate:.2f} {per}"


def _interval(seconds: float) -> str:
    """H:MM:SS or M:SS."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class Progress:
    """One stage's progress. Use `progress(...)`; `update` and `write` may be called from any
    thread (a lock orders them)."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", *, initial: int = 0,
                 stream: TextIO | None = None, mode: str | None = None,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.total, self.desc, self.unit = total, desc, unit
        self.initial = self.n = initial
        self.figures: dict[str, object] = {}
        self.stream = stream if stream is not None else sys.stderr
        self.mode = mode or (progress_mode(self.stream) if is_primary_process() else "off")
        self._clock = clock
        self._start = self._last_line_time = clock()
        self._last_line_n = initial
        self._lock = threading.Lock()
        self._bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, file=self.stream,
                mininterval=0.5, dynamic_ncols=True,
            )  # fmt: skip

    def update(self, n: int = 1, **figures) -> None:
        """Advance by `n` (0: only change figures) and set the named figures shown after it."""
        with self._lock:
            self.n += n
            self.figures.update(figures)
            if self._bar is not None:
                if figures:
                    self._bar.set_postfix_str(self.postfix(), refresh=False)
                self._bar.update(n)
            elif self.mode == "lines" and self._line_due():
                self._print_line()

    def write(self, message: str) -> None:
        """Print a message on the stream without breaking the bar (nothing when off)."""
        with self._lock:
            if self._bar is not None:
                self._bar.write(message, file=self.stream)
            elif self.mode == "lines":
                print(message, file=self.stream, flush=True)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            elif self.mode == "lines" and self.n != self._last_line_n:
                self._print_line()
            self.mode = "off" if self.mode == "lines" else self.mode

    def postfix(self) -> str:
        """The figures as `name=value` words: `reward=0.41 conf=0.73`."""
        return " ".join(f"{k}={format_figure(v)}" for k, v in self.figures.items())

    def line(self) -> str:
        """The non-terminal line for the current state."""
        elapsed = self._clock() - self._start
        done = self.n - self.initial
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{self.desc}: {count} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(_rate(done, elapsed, self.unit))
        parts.append(f"{_interval(elapsed)} elapsed")
        if self.total and done > 0 and self.n < self.total:
            parts.append(f"ETA {_interval((self.total - self.n) * elapsed / done)}")
        text = ", ".join(parts)
        return f"{text} | {self.postfix()}" if self.figures else text

    def _line_due(self) -> bool:
        gap = self._clock() - self._last_line_time
        if gap >= LINE_EVERY_SECONDS:
            return True
        if gap < LINE_MIN_SECONDS:
            return False
        if self._last_line_n == self.initial:  # the first update: the rate is known
            return True
        step = max(1.0, LINE_EVERY_FRACTION * self.total) if self.total else math.inf
        return math.floor(self.n / step) > math.floor(self._last_line_n / step)

    def _print_line(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last_line_n, self._last_line_time = self.n, self._clock()


@contextlib.contextmanager
def progress(total: int | None, desc: str, unit: str = "it", *, initial: int = 0,
             stream: TextIO | None = None, mode: str | None = None,
             ) -> Iterator[Progress]:  # fmt: skip
    """A `Progress` over `total` units (None: unknown), closed (final line written) on exit.

    Args:
      total: the units the stage will count, or None when unknown (no percentage, no ETA).
      desc: the stage's name, first on the bar and on each line.
      unit: the unit's name ("step", "question", "batch").
      initial: units already done (a resumed run): counted in n, not in the rate.
      stream: where to write (default: sys.stderr at entry).
      mode: "bar", "lines" or "off" to override `COREA_PROGRESS` and the terminal test (tests).
    """
    bar = Progress(total, desc, unit, initial=initial, stream=stream, mode=mode)
    try:
        yield bar
    finally:
        bar.close()

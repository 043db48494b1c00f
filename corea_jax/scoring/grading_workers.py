"""Batch grading in worker processes, with per-answer time limits that cannot be dodged.

`Grader(workers=2).grade(tasks)` grades a list of `GradeTask`s and returns one `Grade` per task,
in order. It exists because math-verify on adversarial text can run for ever or exhaust memory,
its signal-based timeouts only work on a main thread, and some of its work (big-integer powers)
runs in C where no signal handler gets a chance. So:

- Each worker grades on its own main thread, under `grading.soft_time_limit` (the cheap limit,
  `options.time_limit_s`), with an address-space limit of `options.memory_limit_mb`.
- The parent gives each worker a chunk of tasks and watches the results come back one by one.
  When a worker has been silent for `time_limit_s + hard_grace_s` on one answer, the parent
  kills it: that answer is graded wrong ("timeout") and the rest of the chunk goes back in the
  queue for a fresh worker. A worker that dies (memory, segfault) costs only the answer it was
  on ("crashed").
- Identical tasks are graded once (GRPO groups repeat answers); gold parses are cached in each
  worker.

Workers are plain `python -m corea_jax.scoring.grading_workers` processes talking over two
pipes: nothing of the parent (JAX's threads, an unguarded `__main__`) is forked or re-imported,
and a worker dies with its parent. A start or a replacement costs about a second of imports.
Defaults where nothing is prescribed: `workers=os.cpu_count()`, `chunk_size=16`,
`hard_grace_s=2.0`, `startup_s=60`.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import json
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

from corea_jax.errors import CoreaError
from corea_jax.scoring import grading
from corea_jax.scoring.grading import Grade, GradeTask, GradingConfig


def _worker_main(argv: list[str]) -> None:
    """Worker loop: receive chunks of (index, task), send back (index, Grade) per task.

    argv: the read fd, the write fd, and the `GradingConfig` as JSON; with no arguments, a
    self-check of the imports (what to run when workers will not start).
    """
    if not argv:
        grading.warm_up()
        print(
            "corea_jax.scoring.grading_workers: math-verify imports and grades; workers can start"
        )
        return
    conn_in = Connection(int(argv[0]), writable=False)
    conn_out = Connection(int(argv[1]), readable=False)
    options = GradingConfig(**json.loads(argv[2]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if sys.platform.startswith("linux"):  # die with the parent, even inside a long C call
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if options.memory_limit_mb is not None:
        import resource

        limit = options.memory_limit_mb * 2**20
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    grading.warm_up()
    while True:
        try:
            chunk = conn_in.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for index, task in chunk:
            try:
                grade = grading.grade_answer(*task, options=options)
            except Exception as e:  # a bad task must not take the worker down
                grade = Grade(False, "error", f"{type(e).__name__}: {str(e)[:200]}")
            try:
                conn_out.send((index, grade))
            except (BrokenPipeError, OSError):
                return


class _Worker:
    """One worker process (`python -m corea_jax.scoring.grading_workers`), its two pipes, and the
    tasks it holds, in the order it grades them."""

    def __init__(self, options: GradingConfig):
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        env = dict(os.environ)
        root = str(Path(grading.__file__).resolve().parents[2])  # works from a bare checkout
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "corea_jax.scoring.grading_workers",
                str(child_in),
                str(child_out),
                json.dumps(dataclasses.asdict(options)),
            ],
            pass_fds=(child_in, child_out),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        os.close(child_in)
        os.close(child_out)
        self.send_conn = Connection(to_child, readable=False)
        self.conn = Connection(from_child, writable=False)
        self.pending: collections.deque[int] = collections.deque()
        self.deadline = float("inf")
        self.fresh = True  # its first answer also waits for start-up (imports, warm-up)

    def send(self, message) -> None:
        try:
            self.send_conn.send(message)
        except OSError:
            pass  # a dead worker shows up as EOF on its result pipe

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=5)
        self.send_conn.close()
        self.conn.close()


class Grader:
    """A pool of grading workers, kept alive across `grade` calls (use as a context manager).

    Args:
      workers: worker processes (default `os.cpu_count()`); 0 grades in this process, with only
        the soft time limit (and only on the main thread): for debugging.
      options: `GradingConfig` (time and memory limits, tolerances).
      chunk_size: tasks sent to a worker at a time (fewer, larger messages).
      hard_grace_s: how far past `options.time_limit_s` a silent worker is killed.
      startup_s: extra time a new worker gets for its first answer (imports, warm-up).
    """

    def __init__(
        self,
        workers: int | None = None,
        options: GradingConfig | None = None,
        chunk_size: int = 16,
        hard_grace_s: float = 2.0,
        startup_s: float = 60.0,
    ):
        self.options = GradingConfig() if options is None else options
        self.n_workers = (os.cpu_count() or 1) if workers is None else workers
        if self.n_workers < 0 or chunk_size < 1:
            raise CoreaError(f"Grader: workers={workers}, chunk_size={chunk_size} out of range")
        self.chunk_size = chunk_size
        self.hard_limit_s = self.options.time_limit_s + hard_grace_s
        self.startup_s = startup_s
        self._workers: list[_Worker] = []
        self.restarts = 0
        self._failed_starts = 0

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker."""
        for w in self._workers:
            w.send(None)
        for w in self._workers:
            try:
                w.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            w.kill()
        self._workers = []

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring)."""
        return [w.process.pid for w in self._workers if w.process.poll() is None]

    def grade(self, tasks: Sequence[GradeTask]) -> list[Grade]:
        """One `Grade` per task, in order. Raises `CoreaError` only for a bad gold or kind."""
        tasks = [GradeTask(*t) for t in tasks]
        tasks = [t._replace(choices=grading.normalize_choices(t.choices)) for t in tasks]
        unique = list(dict.fromkeys(tasks))
        for task in unique:
            grading.check_task(*task, options=self.options)
        if self.n_workers == 0:
            results = [grading.grade_answer(*t, options=self.options) for t in unique]
        else:
            results = self._grade_in_workers(unique)
        by_task = dict(zip(unique, results, strict=True))
        return [by_task[t] for t in tasks]

    def _grade_in_workers(self, tasks: list[GradeTask]) -> list[Grade]:
        results: list[Grade | None] = [None] * len(tasks)
        queue = collections.deque(range(len(tasks)))
        while len(self._workers) < min(self.n_workers, max(1, len(tasks))):
            self._workers.append(_Worker(self.options))
        remaining = len(tasks)
        while remaining:
            for w in self._workers:
                if not w.pending and queue:
                    n = min(self.chunk_size, -(-len(queue) // len(self._workers)))
                    chunk = [queue.popleft() for _ in range(n)]
                    w.pending.extend(chunk)
                    w.send([(i, tasks[i]) for i in chunk])
                    w.deadline = time.monotonic() + self.hard_limit_s
                    if w.fresh:
                        w.deadline += self.startup_s
            busy = [w for w in self._workers if w.pending]
            timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = multiprocessing.connection.wait([w.conn for w in busy], timeout)
            now = time.monotonic()
            for w in list(busy):
                if w.conn in ready:
                    try:
                        while w.conn.poll():
                            index, grade = w.conn.recv()
                            results[index] = grade
                            remaining -= 1
                            w.pending.remove(index)
                            w.deadline = now + self.hard_limit_s
                            w.fresh = False
                    except (EOFError, OSError):
                        remaining -= self._replace(w, queue, results, "crashed", "worker died")
                elif now >= w.deadline:
                    remaining -= self._replace(
                        w, queue, results, "timeout", f"over {self.hard_limit_s:g} s (killed)"
                    )
        return results  # type: ignore[return-value]

    def _replace(self, w: _Worker, queue, results, method: str, reason: str) -> int:
        """Kill `w`, grade the answer it was on as wrong, requeue the rest, start a new worker;
        returns how many answers were settled (0 or 1)."""
        w.kill()
        if w.fresh and method == "crashed":
            self._failed_starts += 1
            if self._failed_starts >= 3:  # a broken install, not a bad answer
                raise RuntimeError(
                    "grading workers keep dying before their first answer; run "
                    f"`{sys.executable} -m corea_jax.scoring.grading_workers` to see why"
                )
        else:
            self._failed_starts = 0
        settled = 0
        if w.pending:
            results[w.pending.popleft()] = Grade(False, method, reason)
            settled = 1
        queue.extendleft(reversed(w.pending))
        self._workers[self._workers.index(w)] = _Worker(self.options)
        self.restarts += 1
        return settled


def grade_batch(
    tasks: Sequence[GradeTask],
    workers: int | None = None,
    options: GradingConfig | None = None,
) -> list[Grade]:
    """Grade `tasks` with a temporary `Grader` (start-up costs about a second; keep a `Grader`
    open across batches in a training loop)."""
    with Grader(workers=workers, options=options) as grader:
        return grader.grade(tasks)


if __name__ == "__main__":
    _worker_main(sys.argv[1:])

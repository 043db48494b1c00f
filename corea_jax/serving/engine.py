"""The SLM engine: continuous batching over `kernels` on one thread that owns the device state.

Requests (`Generation`) wait in a bounded queue. Between decode segments the engine thread:
admits waiting requests into free rows (prefilled in chunks of bucket sizes), runs one
segment of `segment` decode steps over the live rows (gathered into a batch whose width is the
smallest row bucket holding them all, padded with free rows), then hands each row its new
tokens; a row that drew EOS, reached its `max_tokens` or produced a stop string is finished
and its row is free for the next admission. A request therefore waits at most one segment
to join, and a short answer never waits for a long one.

Bounded wait: when nothing is decoding, the first arrival waits up to `batch_wait_s` for
others, so a burst of requests shares its first prefill and segment. Refill: when rows finished
in the last segment, the next one waits up to `refill_wait_s` for as many new requests (a
client whose answer just went out usually sends its next question within a millisecond or
two); a row refilled now joins this segment instead of the next one.

Compiled shapes: prefill [A, P] for A in the power-of-two `row_buckets` and P in
`prompt_buckets`, and decode for each width in `row_buckets`: all compiled by `warmup`, so
nothing compiles while serving. On a CPU a decode step costs about the same per row whether
the row is live or padding, so the width follows the number of live rows and fine row buckets
pay (the `:demo` config's). The cache is a ring (`kernels`): the write pointer wraps, nothing
is ever copied to make room.

Abandoned requests (`cancel`, or a future cancelled by its waiter): a queued one leaves the
queue at once; a decoding one frees its row at the end of the segment in flight (a segment is
one device call and is not interrupted) and is never decoded again.

[open] defaults (all `EngineConfig` fields): 32 rows, 8-step segments, powers-of-two row
buckets, prompt buckets 64, 128, 256 (up to `max_prompt_tokens`), a ring of
P_max + N_max slots (the longest row; every decode step reads them all), 5 ms bounded wait,
2 ms refill wait, one lane (`corea_jax.serving.lanes`: several engines over disjoint rows).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from corea_jax.errors import CoreaError
from corea_jax.serving import kernels

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The engine's waiting queue is full; `retry_after_s` is the client's suggested wait."""

    def __init__(self, retry_after_s: float):
        super().__init__("the SLM's queue is full")
        self.retry_after_s = retry_after_s


class EngineStopped(Exception):
    """The engine is draining or stopped and takes no new request."""


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """Shapes and limits of the continuous-batching engine (see the module docstring)."""

    rows: int = 32
    segment: int = 8
    max_prompt_tokens: int = 256
    max_new_tokens: int = 256
    prompt_buckets: tuple[int, ...] = (64, 128, 256)
    row_buckets: tuple[int, ...] = ()  # () = powers of two up to `rows`
    cache_slots: int = 0  # 0 = derived (module docstring)
    max_queue: int = 256
    batch_wait_s: float = 0.005
    refill_wait_s: float = 0.002
    dtype: str = "float32"
    lanes: int = 1  # `corea_jax.serving.lanes`: independent decode loops sharing the rows

    def __post_init__(self):
        for name in ("rows", "segment", "max_prompt_tokens", "max_new_tokens", "max_queue",
                     "lanes"):  # fmt: skip
            if getattr(self, name) < 1:
                raise CoreaError(f"serve.engine.{name}={getattr(self, name)}: must be >= 1")
        if self.lanes > self.rows:
            raise CoreaError(f"serve.engine.lanes={self.lanes}: more lanes than rows "
                             f"({self.rows}); each lane needs a row")  # fmt: skip

    def rows_buckets(self) -> tuple[int, ...]:
        if self.row_buckets:
            out = sorted({min(int(b), self.rows) for b in self.row_buckets} | {self.rows})
            return tuple(out)
        out, b = [], 1
        while b < self.rows:
            out.append(b)
            b *= 2
        return (*out, self.rows)

    def prompt_bucket_list(self) -> tuple[int, ...]:
        out = sorted({b for b in self.prompt_buckets if b < self.max_prompt_tokens})
        return (*out, self.max_prompt_tokens)

    def slots(self) -> int:
        span = self.max_prompt_tokens + self.max_new_tokens
        if self.cache_slots:
            if self.cache_slots < span:
                raise CoreaError(
                    f"serve.engine.cache_slots={self.cache_slots}: needs at least "
                    f"max_prompt_tokens + max_new_tokens = {span} (the longest row)"
                )
            return self.cache_slots
        return span


@dataclasses.dataclass
class Generation:
    """One request to the SLM: prompt ids and sampling settings; `future` gets a `Completion`."""

    prompt: Sequence[int]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)
    enqueued: float = dataclasses.field(default_factory=time.monotonic)
    # Set by the engine under its lock: `stage` "" (not submitted), "queued", "decoding",
    # "done"; `abandoned` the stage it was abandoned in ("" = not abandoned).
    stage: str = ""
    abandoned: str = ""
    lane: int = 0  # the engine lane that took it (`lanes.Lanes`)


@dataclasses.dataclass(frozen=True)
class Completion:
    text: str
    token_ids: tuple[int, ...]  # the answer's tokens (no EOS)
    prompt_tokens: int
    completion_tokens: int  # tokens drawn, the EOS included (what the offline cascade counts)
    finish_reason: str  # "stop" (EOS or a stop string) | "length"
    queue_s: float  # from submission to admission
    batch_rows: int  # live rows in the segment that admitted it


@dataclasses.dataclass
class _Row:
    request: Generation
    tokens: list[int]
    admitted_rows: int
    queue_s: float


class Engine:
    """Continuous batching of `Generation`s on a CausalLM (module docstring).

    Args:
      model: the CausalLM.
      decode_text: token ids -> text (the tokenizer's decode, special tokens skipped).
      eos_ids: token ids that end a row.
      config: `EngineConfig`.
      on_segment: called after each segment with (live rows, steps run): metrics.
      share: another engine whose model and compiled kernels this one uses (a lane of
        `lanes.Lanes`: one copy of the weights, no second compilation).
    """

    def __init__(
        self,
        model,
        decode_text: Callable[[Sequence[int]], str],
        eos_ids: Sequence[int],
        config: EngineConfig = EngineConfig(),
        on_segment: Callable[[int, int], None] | None = None,
        *,
        share: Engine | None = None,
    ):
        self.config = config
        self.model_config = model.config
        if share is None:
            graphdef, self.params = nnx.split(model)
            self.graph = kernels.Graph(graphdef)
        else:  # the same Graph object: jit's cache key, so its kernels are compiled once
            self.graph, self.params = share.graph, share.params
        self.decode_text = decode_text
        self.eos_ids = tuple(sorted({int(i) for i in eos_ids}))
        self.on_segment = on_segment
        self._buckets = config.rows_buckets()
        # Prefill chunk sizes: the power-of-two buckets (any count is a sum of them, so finer
        # buckets would save no padding, only add compiled shapes).
        self._admit_buckets = tuple(b for b in self._buckets if b & (b - 1) == 0) or self._buckets
        self._prompt_buckets = config.prompt_bucket_list()
        self._slots = config.slots()
        # Committed to the device like every kernel output, so the first call of each kernel
        # has the signature of all later ones (an uncommitted input compiles it a second time).
        self._rows_state = jax.device_put(
            kernels.init_rows(model.config, config.rows, self._slots, jnp.dtype(config.dtype)),
            jax.local_devices()[0],
        )
        self._t = 0  # the ring slot written next
        self._live: dict[int, _Row] = {}
        self._freed = 0  # rows that finished in the last segment
        self._queue: collections.deque[Generation] = collections.deque()
        self._cv = threading.Condition()
        self._accepting = True
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.abandoned: collections.Counter[str] = collections.Counter()  # by stage (`cancel`)
        self.segments = 0
        self.wraps = 0  # times the write pointer went round the ring
        # Shapes outside the warmed-up set (each would compile while serving): should stay 0.
        self.compiles_after_warmup = 0
        self._shapes: set[tuple] = set()
        self._warm = False

    # ---------------------------------------------------------------- public

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def live_rows(self) -> int:
        return len(self._live)

    def submit(self, request: Generation) -> concurrent.futures.Future:
        """Queues `request` (raises `QueueFull` or `EngineStopped`); its future gets a
        `Completion` or the exception that stopped it."""
        if not request.prompt:
            raise CoreaError("empty prompt")
        if len(request.prompt) > self.config.max_prompt_tokens:
            raise CoreaError(f"prompt of {len(request.prompt)} tokens over the limit")
        request.max_tokens = max(1, min(int(request.max_tokens), self.config.max_new_tokens))
        with self._cv:
            if not self._accepting:
                raise EngineStopped("the server is shutting down")
            if len(self._queue) >= self.config.max_queue:
                raise QueueFull(self._retry_after())
            request.stage = "queued"
            self._queue.append(request)
            self._cv.notify()
        return request.future

    def cancel(self, request: Generation) -> str:
        """Abandons `request` (its client went away): a queued one leaves the queue now, a
        decoding one frees its row at the end of the segment in flight; its future is cancelled
        and never gets a result. Returns the stage it was abandoned in ("queued" or "decoding"),
        or "" when it had already finished (nothing to stop)."""
        with self._cv:
            if request.abandoned:  # already seen (its waiter cancelled the future first)
                return request.abandoned
            stage = request.stage
            if stage == "queued":
                self._queue.remove(request)
                request.stage = "done"
            elif stage != "decoding":
                return ""
            request.abandoned = stage
            self.abandoned[stage] += 1
        request.future.cancel()
        return stage

    def start(self) -> Engine:
        self._thread = threading.Thread(target=self._loop, name="slm-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self, drain: bool = True, timeout_s: float = 60.0) -> None:
        """Stops taking requests; with `drain` first finishes every queued and live one (for
        at most `timeout_s`). Whatever is left fails with `EngineStopped`."""
        with self._cv:
            self._accepting = False
            self._cv.notify_all()
        deadline = time.monotonic() + timeout_s
        alive = lambda: self._thread is not None and self._thread.is_alive()  # noqa: E731
        while drain and alive() and (self._queue or self._live) and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(10.0)
        self._fail_all(EngineStopped("the server stopped before this request was answered"))

    def warmup(self) -> float:
        """Compiles every shape the engine uses (module docstring); returns the seconds taken."""
        start = time.monotonic()
        for a in self._admit_buckets:
            for p in self._prompt_buckets:
                tokens = np.zeros((a, p), np.int32)
                valid = np.zeros((a, p), bool)
                valid[:, -1] = True
                self._note_shape(("admit", a, p))
                slots = np.arange(a, dtype=np.int32)
                self._rows_state = kernels.admit(
                    self.graph, self.params, self._rows_state, tokens, valid, slots,
                    np.zeros((a,), bool), np.int32(self._t),
                )  # fmt: skip
        for width in self._buckets:
            self._run_decode(width, {}, warm=True)
        jax.block_until_ready(self._rows_state)
        self._warm = True
        return time.monotonic() - start

    # ---------------------------------------------------------------- the engine thread

    def _retry_after(self) -> float:
        # About one queue's worth of segments: a rough, honest hint, at least a second.
        return max(1.0, len(self._queue) / max(self.config.rows, 1) * 0.5)

    def _loop(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._queue and not self._live and not self._stopping:
                        self._cv.wait(0.1)
                    if self._stopping:
                        return
                    if not self._live and self._queue and self.config.batch_wait_s > 0:
                        self._wait_for_queue(self.config.rows, self.config.batch_wait_s)
                    elif self._live and self._freed and self.config.refill_wait_s > 0:
                        self._wait_for_queue(self._freed, self.config.refill_wait_s)
                    self._freed = 0
                    self._drop_abandoned()
                    admitted = self._take_admissions()
                if admitted:
                    self._admit(admitted)
                if self._live:
                    self._segment()
        except BaseException as exc:  # a bug or a device error: fail every request, loudly
            log.exception("SLM engine stopped")
            self._fail_all(exc)
            with self._cv:
                self._accepting = False

    def _wait_for_queue(self, n: int, wait_s: float) -> None:
        """Under the lock: waits up to `wait_s` for `n` queued requests."""
        deadline = time.monotonic() + wait_s
        while len(self._queue) < n and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cv.wait(left)

    def _drop_abandoned(self) -> None:
        """Frees the rows of abandoned requests (under the lock, between segments). A future
        cancelled by its waiter without `cancel` counts as abandoned too."""
        for r in [r for r, row in self._live.items() if row.request.abandoned
                  or row.request.future.cancelled()]:  # fmt: skip
            g = self._live.pop(r).request
            if not g.abandoned:
                g.abandoned = "decoding"
                self.abandoned["decoding"] += 1
            g.stage = "done"
        if any(g.future.cancelled() for g in self._queue):
            for g in self._queue:
                if g.future.cancelled():
                    g.abandoned, g.stage = "queued", "done"
                    self.abandoned["queued"] += 1
            self._queue = collections.deque(g for g in self._queue if not g.abandoned)

    def _take_admissions(self) -> list[tuple[int, Generation]]:
        free = [r for r in range(self.config.rows) if r not in self._live]
        out = []
        while self._queue and free:
            g = self._queue.popleft()
            g.stage = "decoding"
            out.append((free.pop(0), g))
        return out

    def _admit(self, admitted: list[tuple[int, Generation]]) -> None:
        """Prefills `admitted` in chunks whose sizes are power-of-two buckets (largest first,
        prompts of similar length together), so no prefill row is padding: on a CPU a padding
        row costs as much as a real one. Only a remainder below the smallest bucket is padded."""
        now = time.monotonic()
        live_after = len(self._live) + len(admitted)
        todo = sorted(admitted, key=lambda x: len(x[1].prompt), reverse=True)
        while todo:
            size = max((b for b in self._admit_buckets if b <= len(todo)), default=len(todo))
            chunk, todo = todo[:size], todo[size:]
            self._prefill(chunk)
        for row, g in admitted:
            self._live[row] = _Row(g, [], live_after, now - g.enqueued)

    def _prefill(self, chunk: list[tuple[int, Generation]]) -> None:
        width = len(chunk)
        a = next(b for b in self._admit_buckets if b >= width)
        p = next(b for b in self._prompt_buckets if b >= max(len(g.prompt) for _, g in chunk))
        tokens = np.zeros((a, p), np.int32)
        valid = np.zeros((a, p), bool)
        slots = np.zeros((a,), np.int32)
        write = np.zeros((a,), bool)
        used = {row for row, _ in chunk}
        spare = (r for r in range(self.config.rows) if r not in used)
        for i in range(a):
            if i < width:
                row, g = chunk[i]
                tokens[i, p - len(g.prompt) :] = g.prompt
                valid[i, p - len(g.prompt) :] = True
                slots[i], write[i] = row, True
            else:
                slots[i] = next(spare)
        self._note_shape(("admit", a, p))
        self._rows_state = kernels.admit(
            self.graph, self.params, self._rows_state, tokens, valid, slots, write,
            np.int32(self._t),
        )  # fmt: skip

    def _run_decode(self, width: int, rows: dict[int, _Row], warm: bool = False):
        """One segment over the live `rows` padded with free rows to `width` -> (positions:
        the row at each position, tokens, drawn, eos, steps) as host arrays."""
        free = (r for r in range(self.config.rows) if r not in rows)
        index = sorted([*rows, *itertools.islice(free, width - len(rows))])
        temperature = np.zeros((width,), np.float32)
        top_p = np.ones((width,), np.float32)
        counts = np.zeros((width,), np.int32)
        budget = np.zeros((width,), np.int32)
        seeds = np.zeros((width,), np.int32)
        for i, r in enumerate(index):
            row = rows.get(r)
            if row is None:
                continue
            g = row.request
            temperature[i], top_p[i] = g.temperature, g.top_p
            counts[i] = len(row.tokens)
            budget[i] = g.max_tokens - len(row.tokens)
            seeds[i] = g.seed
        if warm:
            budget[0] = 1
        self._note_shape(("decode", width))
        out = kernels.decode(
            self.graph, self.params, self._rows_state, np.int32(self._t),
            np.asarray(index, np.int32), temperature, top_p, seeds, counts, budget,
            width=width, steps=self.config.segment, eos_ids=self.eos_ids,
        )  # fmt: skip
        self._rows_state = out[0]
        return (index, *(np.asarray(x) for x in out[1:]))

    def _segment(self) -> None:
        width = next(b for b in self._buckets if b >= len(self._live))
        index, tokens, drawn, eos, steps = self._run_decode(width, self._live)
        self._t += int(steps)
        if self._t >= self._slots:
            self._t -= self._slots
            self.wraps += 1
        self.segments += 1
        if self.on_segment is not None:
            self.on_segment(len(self._live), int(steps))
        for i, r in enumerate(index):
            row = self._live.get(r)
            if row is None:
                continue
            new = tokens[i, : drawn[i]].tolist()
            row.tokens.extend(new)
            finish = None
            answer = row.tokens
            if eos[i]:
                finish = "stop"
                answer = row.tokens[:-1]  # the EOS token is not part of the answer
            elif len(row.tokens) >= row.request.max_tokens:
                finish = "length"
            stop = row.request.stop
            if finish is None and not stop:
                continue  # decoded once, when it finishes
            text = self.decode_text(answer)
            if stop and any(s in text for s in stop):
                cut = min(text.find(s) for s in stop if s in text)
                text, finish = text[:cut], "stop"
            if finish is None:
                continue
            del self._live[r]
            self._freed += 1
            row.request.stage = "done"
            completion = Completion(
                text=text,
                token_ids=tuple(answer),
                prompt_tokens=len(row.request.prompt),
                completion_tokens=len(row.tokens),
                finish_reason=finish,
                queue_s=row.queue_s,
                batch_rows=row.admitted_rows,
            )
            _resolve(row.request.future, completion)

    def _note_shape(self, shape: tuple) -> None:
        if shape in self._shapes:
            return
        self._shapes.add(shape)
        if self._warm:
            self.compiles_after_warmup += 1
            log.warning("the SLM engine compiles a new shape after warm-up: %s", shape)

    def _fail_all(self, exc: BaseException) -> None:
        with self._cv:
            pending = [g for g in self._queue] + [r.request for r in self._live.values()]
            self._queue.clear()
            self._live.clear()
        for g in pending:
            g.stage = "done"
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
                if not g.future.done():
                    g.future.set_exception(
                        exc if isinstance(exc, Exception) else RuntimeError(str(exc))
                    )


def _resolve(future: concurrent.futures.Future, value) -> None:
    # The waiter may cancel the future at any moment (its client went away): not an error.
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if not future.done():
            future.set_result(value)

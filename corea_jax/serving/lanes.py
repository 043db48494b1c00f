"""Engine lanes: several `Engine`s over disjoint rows behind one `submit`.

Each lane is a whole `Engine` (its own rows, ring cache, write pointer, queue and thread); the
lanes share the model's weights and compiled kernels (`Engine(share=...)`). A request goes to
the lane with the fewest requests queued or decoding (the first on a tie), and stays there.

[open] why lanes, and their number (`EngineConfig.lanes`, default 1). XLA's CPU backend runs a
small model's decode step on one core: the demo SLM's 24-row step costs the same pinned to one
core as on two (benchmarks/serve.py's README section). One engine loop therefore decodes on one
core while the others serve HTTP or idle; a second lane decodes a second batch on its own
thread (XLA releases the GIL), on another core. A lane's batch is smaller, and on a CPU a row
costs nearly the same in a batch of 12 as of 24, so little is lost to the split. On one GPU or
TPU keep 1: the device runs one program at a time and a wider batch is what it is fast at.
`rows` and `max_queue` are split between the lanes (the first lanes take the remainder); every
lane keeps the prompt buckets and the row buckets, the latter clipped to its own rows.

What a lane does not do: take another lane's queued request when it has a free row first (the
least-loaded choice keeps the queues even; a queue forms only when every row is busy).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Sequence

from corea_jax.serving.engine import Engine, EngineConfig, Generation


def lane_configs(config: EngineConfig) -> list[EngineConfig]:
    """`config` split into `config.lanes` lanes: rows and queue slots shared out evenly."""
    n = config.lanes
    share = lambda total, i: total // n + (i < total % n)  # noqa: E731
    return [
        dataclasses.replace(
            config,
            rows=share(config.rows, i),
            max_queue=max(1, share(config.max_queue, i)),
            lanes=1,
        )
        for i in range(n)
    ]


def _summed(name: str, start=0) -> property:
    """A read-only attribute: `name` of every lane, summed."""
    return property(lambda self: sum((getattr(e, name) for e in self.lanes), start))


class Lanes:
    """The `Engine` interface over `config.lanes` engines (module docstring)."""

    def __init__(
        self,
        model,
        decode_text: Callable[[Sequence[int]], str],
        eos_ids: Sequence[int],
        config: EngineConfig,
        on_segment: Callable[[int, int], None] | None = None,
    ):
        self.config = config
        self.lanes: list[Engine] = []
        for c in lane_configs(config):
            share = self.lanes[0] if self.lanes else None
            self.lanes.append(Engine(model, decode_text, eos_ids, c, on_segment, share=share))

    # What the service and the tests read of an `Engine`, summed over the lanes.
    queue_depth = _summed("queue_depth")
    live_rows = _summed("live_rows")
    segments = _summed("segments")
    wraps = _summed("wraps")
    compiles_after_warmup = _summed("compiles_after_warmup")
    abandoned = _summed("abandoned", Counter())

    def submit(self, request: Generation) -> concurrent.futures.Future:
        """Queues `request` on the least-loaded lane (`Engine.submit`)."""
        load = [e.queue_depth + e.live_rows for e in self.lanes]
        request.lane = load.index(min(load))
        return self.lanes[request.lane].submit(request)

    def cancel(self, request: Generation) -> str:
        return self.lanes[request.lane].cancel(request)

    def warmup(self) -> float:
        """Compiles every shape (the first lane; the others run each kernel once from the
        cache, as their shapes differ only when their row counts do)."""
        return sum(e.warmup() for e in self.lanes)

    def start(self) -> Lanes:
        for e in self.lanes:
            e.start()
        return self

    def stop(self, drain: bool = True, timeout_s: float = 60.0) -> None:
        """Stops every lane at once (`Engine.stop`): none takes a request while another drains."""
        threads = [threading.Thread(target=e.stop, args=(drain, timeout_s)) for e in self.lanes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def make_engine(model, decode_text, eos_ids, config: EngineConfig, on_segment=None):
    """An `Engine`, or `Lanes` when `config.lanes` > 1."""
    if config.lanes == 1:
        return Engine(model, decode_text, eos_ids, config, on_segment)
    return Lanes(model, decode_text, eos_ids, config, on_segment)

"""The cascade behind the endpoint: the SLM answers, its stated confidence decides, the LLM
answers what is deferred.

The rule is the offline cascade's (`corea_jax.cascade.sweep`): defer when the parsed
confidence is below tau, an unparseable one counting as `invalid_confidence` (0: defer). Cost is
tokens x the price table, the SLM charged on every request and the LLM on deferred ones
(`corea_jax.cascade.cost`). What the offline evaluation does not have: the SLM's request comes
from a client (its own messages, sampling parameters and stop strings), the LLM may fail while
the request waits (the failure policy), and everything is reported per request in the response's
`corea` field:

    answered_by     "slm" | "llm" | "slm_fallback" (deferred, the LLM failed, the SLM's answer)
    deferred        confidence < tau
    tau, tau_source
    slm             confidence, confidence_valid, answer, tokens, cost_usd, finish_reason,
                    queue_s, batch_rows (live rows when it joined), latency_s
    llm             null, or model, simulated, tokens, cost_usd, attempts, latency_s
    fallback_reason null, or why the LLM's answer is missing
    cost_usd        slm + llm

`usage` sums both sides' tokens.

Abandoned requests: `complete` runs as a task that the HTTP side cancels when the client goes
away (or past `server.request_timeout_s`); the cancellation stops the work wherever it is (the
engine's queue or row, `Engine.cancel`; the upstream call, `Upstream`) and is counted in
`corea_abandoned_total{stage}`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import random
import threading
import time

from corea_jax.cascade import PriceTable
from corea_jax.data import DEFAULT_SYSTEM
from corea_jax.models import encode_text, render_chat
from corea_jax.scoring.parsing import parse_completion
from corea_jax.serving import protocol
from corea_jax.serving.engine import EngineStopped, Generation, QueueFull
from corea_jax.serving.metrics import ServerMetrics
from corea_jax.serving.protocol import APIError, ChatRequest
from corea_jax.serving.settings import DEFAULT, ServeConfig
from corea_jax.serving.upstream import Upstream, UpstreamError


@dataclasses.dataclass
class CascadeService:
    """Everything a request needs. `engine` has `submit(Generation) -> Future`,
    `cancel(Generation) -> stage`, `warmup()`, `start()`, `stop(drain)`, `queue_depth` and
    `live_rows` (the real `Engine`, or a stand-in in tests)."""

    config: ServeConfig
    engine: object
    tokenizer: object
    upstream: Upstream
    tau: float
    tau_source: str
    metrics: ServerMetrics = dataclasses.field(default_factory=ServerMetrics)
    ready: threading.Event = dataclasses.field(default_factory=threading.Event)
    warmup_error: str | None = None

    def __post_init__(self):
        self.prices: PriceTable = self.config.price_table()
        self.slm_price = self.prices.price(self.config.slm.price_name)
        self.llm_price = self.prices.price(self.config.llm.model)
        self.metrics.queue_depth.set_function(lambda: self.engine.queue_depth)
        self.metrics.live_rows.set_function(lambda: self.engine.live_rows)
        self.upstream.on_abandon = lambda where: self.metrics.abandoned.labels(
            f"upstream_{where}"
        ).inc()
        self._rng = random.Random()

    # ------------------------------------------------------------------ start and stop

    def warm_up(self) -> None:
        """Compiles the SLM's shapes, starts its engine, with `server.gc_freeze` freezes the
        start-up's objects out of the garbage collector, then marks the service ready."""
        try:
            self.engine.warmup()
            self.engine.start()
            if self.config.server.gc_freeze:
                gc.collect()
                gc.freeze()
        except Exception as exc:  # reported by /health; the process keeps serving errors
            self.warmup_error = f"{type(exc).__name__}: {exc}"
            raise
        self.ready.set()
        self.metrics.ready.set(1)

    def stop(self, drain: bool = True) -> None:
        self.engine.stop(drain=drain, timeout_s=self.config.server.drain_timeout_s)
        self.upstream.close()

    # ------------------------------------------------------------------ one request

    def slm_messages(self, messages) -> list[dict]:
        system = self.config.slm.system
        if any(m["role"] == "system" for m in messages) or not system:
            return list(messages)
        return [{"role": "system", "content": DEFAULT_SYSTEM if system == DEFAULT else system},
                *messages]  # fmt: skip

    def llm_messages(self, messages) -> list[dict]:
        if any(m["role"] == "system" for m in messages):
            return list(messages)
        return [{"role": "system", "content": self.config.llm.system or DEFAULT_SYSTEM}, *messages]

    def encode(self, messages) -> list[int]:
        text = render_chat(self.tokenizer, self.slm_messages(messages))
        ids = encode_text(self.tokenizer, text)
        limit = self.config.engine.max_prompt_tokens
        if len(ids) > limit:
            raise APIError(
                400,
                f"the prompt is {len(ids)} tokens, over this server's limit of {limit}",
                param="messages",
                code="context_length_exceeded",
            )
        return ids

    async def complete(self, request: ChatRequest) -> dict:
        """The chat-completion body for a validated request, or `APIError`."""
        start = time.monotonic()
        if not self.ready.is_set():
            raise APIError(503, "the SLM is warming up; retry shortly", kind="server_error",
                           code="warming_up", headers={"Retry-After": "5"})  # fmt: skip
        ids = self.encode(request.messages)
        seed = request.seed if request.seed is not None else self._rng.randrange(2**31)
        generation = Generation(
            ids, request.max_tokens, request.temperature, request.top_p, seed, request.stop
        )
        try:
            future = self.engine.submit(generation)
        except QueueFull as exc:
            retry = f"{max(1, round(exc.retry_after_s))}"
            raise APIError(429, "the server's queue is full; retry after the Retry-After delay",
                           kind="rate_limit_error", code="queue_full",
                           headers={"Retry-After": retry}) from None  # fmt: skip
        except EngineStopped as exc:
            raise APIError(503, str(exc), kind="server_error", code="shutting_down") from None
        try:
            slm = await asyncio.wrap_future(future)
        except EngineStopped as exc:
            raise APIError(503, str(exc), kind="server_error", code="shutting_down") from None
        except asyncio.CancelledError:
            stage = self.engine.cancel(generation)
            self.metrics.abandoned.labels(stage or "answered").inc()
            raise
        slm_latency = time.monotonic() - start
        self.metrics.slm_latency.observe(slm_latency)
        parsed = parse_completion(slm.text)
        valid = parsed.confidence is not None
        confidence = parsed.confidence if valid else self.config.tau.invalid_confidence
        deferred = confidence < self.tau
        slm_tokens = (slm.prompt_tokens, slm.completion_tokens)
        slm_cost = float(self.prices.cost(self.config.slm.price_name, *slm_tokens))
        self.metrics.side("slm", *slm_tokens, slm_cost)
        meta = {
            "answered_by": "slm",
            "deferred": deferred,
            "tau": self.tau,
            "tau_source": self.tau_source,
            "slm": {
                "confidence": parsed.confidence,
                "confidence_valid": valid,
                "answer": parsed.answer,
                "prompt_tokens": slm_tokens[0],
                "completion_tokens": slm_tokens[1],
                "cost_usd": slm_cost,
                "finish_reason": slm.finish_reason,
                "queue_s": round(slm.queue_s, 4),
                "batch_rows": slm.batch_rows,
                "latency_s": round(slm_latency, 4),
            },
            "llm": None,
            "fallback_reason": None,
        }
        content, finish, llm_tokens, llm_cost = slm.text, slm.finish_reason, (0, 0), 0.0
        if deferred:
            llm_start = time.monotonic()
            try:
                answer = await self.upstream.answer(self.llm_messages(request.messages))
            except UpstreamError as exc:
                self.metrics.upstream_failures.labels(exc.reason).inc()
                if self.config.server.upstream_failure == "error":
                    self.metrics.answered("error_upstream", True, time.monotonic() - start)
                    raise APIError(502, f"the upstream LLM failed: {exc}", kind="upstream_error",
                                   code=f"upstream_{exc.reason}") from None  # fmt: skip
                meta["answered_by"] = "slm_fallback"
                meta["fallback_reason"] = f"the upstream LLM failed: {exc}"
            else:
                llm_latency = time.monotonic() - llm_start
                self.metrics.upstream_latency.observe(llm_latency)
                llm_tokens = (answer.prompt_tokens, answer.completion_tokens)
                llm_cost = float(self.prices.cost(self.config.llm.model, *llm_tokens))
                self.metrics.side("llm", *llm_tokens, llm_cost)
                content, finish = answer.text, answer.finish_reason or "stop"
                meta["answered_by"] = "llm"
                meta["llm"] = {
                    "model": self.config.llm.model,
                    "simulated": self.upstream.simulated,
                    "prompt_tokens": llm_tokens[0],
                    "completion_tokens": llm_tokens[1],
                    "usage_source": answer.usage_source,
                    "cost_usd": llm_cost,
                    "attempts": answer.attempts,
                    "latency_s": round(llm_latency, 4),
                }
        meta["cost_usd"] = slm_cost + llm_cost
        usage = protocol.usage(slm_tokens[0] + llm_tokens[0], slm_tokens[1] + llm_tokens[1])
        self.metrics.answered(meta["answered_by"], deferred, time.monotonic() - start)
        return protocol.completion_body(
            protocol.completion_id(), self.config.slm.served_name, content, finish, usage, meta
        )

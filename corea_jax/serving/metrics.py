"""Prometheus metrics of the server, on a registry of its own (several servers per process in
tests). Labels never carry request text, URLs or keys: only the side that answered and fixed
outcome names.

    corea_requests_total{outcome}               slm | llm | fallback | error_4xx | error_5xx | ...
    corea_deferral_ratio                        deferred / SLM-decided requests since start
    corea_tokens_total{side, kind}              side slm | llm, kind prompt | completion
    corea_cost_usd_total{side}
    corea_upstream_failures_total{reason}       timeout | error
    corea_abandoned_total{stage}                requests whose client went away (or that ran past
                                                server.request_timeout_s), by where the work was
                                                stopped: queued | decoding (the SLM's queue or
                                                row freed) | upstream_waiting (the LLM call never
                                                made) | upstream_in_flight (the call was running:
                                                it ends on its own timeout) | answered (nothing
                                                left to stop)
    corea_queue_depth, corea_live_rows          requests waiting for / holding an SLM row
    corea_batch_rows                            live rows per decode segment (histogram)
    corea_request_latency_seconds{outcome}      end to end (histogram)
    corea_slm_latency_seconds, corea_upstream_latency_seconds
    corea_ready                                 1 once warm-up is done
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
DECIDED = ("slm", "llm", "slm_fallback", "error_upstream")
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("corea_requests", "Requests by outcome", ["outcome"], registry=r)
        self.deferral_ratio = Gauge(
            "corea_deferral_ratio", "Share of answered requests deferred to the LLM", registry=r
        )
        self.tokens = Counter("corea_tokens", "Tokens by side", ["side", "kind"], registry=r)
        self.cost = Counter("corea_cost_usd", "Cost in US dollars by side", ["side"], registry=r)
        self.upstream_failures = Counter(
            "corea_upstream_failures", "Upstream LLM calls that failed", ["reason"], registry=r
        )
        self.abandoned = Counter(
            "corea_abandoned", "Requests abandoned by their client, by stage", ["stage"], registry=r
        )
        self.queue_depth = Gauge("corea_queue_depth", "Requests waiting for an SLM row", registry=r)
        self.live_rows = Gauge("corea_live_rows", "Requests decoding on the SLM", registry=r)
        self.batch_rows = Histogram(
            "corea_batch_rows", "Live rows per SLM decode segment", buckets=ROW_BUCKETS, registry=r
        )
        self.latency = Histogram(
            "corea_request_latency_seconds", "Request latency", ["outcome"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.slm_latency = Histogram(
            "corea_slm_latency_seconds", "SLM generation latency (queue included)",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_latency = Histogram(
            "corea_upstream_latency_seconds", "Upstream LLM latency", buckets=LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.ready = Gauge("corea_ready", "1 once the SLM is warm", registry=r)
        self._lock = threading.Lock()
        self._answered = 0
        self._deferred = 0

    def answered(self, outcome: str, deferred: bool, latency_s: float) -> None:
        self.requests.labels(outcome).inc()
        self.latency.labels(outcome).observe(latency_s)
        if outcome not in DECIDED:  # rejected before the SLM answered: no deferral decision
            return
        with self._lock:
            self._answered += 1
            self._deferred += int(deferred)
            self.deferral_ratio.set(self._deferred / self._answered)

    def side(self, side: str, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        self.tokens.labels(side, "prompt").inc(prompt_tokens)
        self.tokens.labels(side, "completion").inc(completion_tokens)
        self.cost.labels(side).inc(cost)

    def segment(self, rows: int, steps: int) -> None:
        del steps
        self.batch_rows.observe(rows)

    def text(self) -> bytes:
        return generate_latest(self.registry)

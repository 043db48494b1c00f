"""The upstream LLM, one deferred request at a time, through the project's `LLMClient`.

The client (its retries with backoff, `Retry-After`, per-call timeouts and key handling) runs
on a worker thread per call; the server awaits it with a deadline (`upstream_timeout_s`, retries
included), so a request never hangs on the upstream: past the deadline the call is abandoned
(its thread finishes or times out on its own) and the request gets the configured failure
policy. Calls in flight are bounded by a semaphore.

Abandoned calls (the request's task is cancelled: its client went away, or the deadline
passed): a call still waiting for the semaphore or for a worker thread is never made; a call
already running gets the client's abort hook (`LLMClient.complete(cancel=...)`): no further
attempt starts and a backoff wait (a 429's `Retry-After`, say) ends at once. The HTTP call on
the wire at that moment is not cut (the SDK's synchronous transport cannot be interrupted from
another thread): it ends by its own timeout and its answer is dropped.
`on_abandon("waiting" | "in_flight")` counts them.

The client is built without a response cache (a live server should not answer a question from
an earlier run's file) and with a failure budget that never stops it: every failed question is
this request's failure only.

Secrets: the key goes from the environment to the client and nowhere else; failure messages
come from the client, which scrubs the key, and are scrubbed here once more before they can
reach a response or a log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import os
import sys
import threading
from collections.abc import Callable

from corea_jax.cascade import ClientConfig, LLMClient, LLMConfig, LLMRequest
from corea_jax.errors import CoreaError


class UpstreamError(Exception):
    """The upstream LLM did not answer; `reason` is "timeout" or "error", the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class UpstreamAnswer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    attempts: int
    usage_source: str


class Upstream:
    """`await upstream.answer(messages)` -> `UpstreamAnswer`, or `UpstreamError`.

    Args:
      llm: the `LLMConfig` (endpoint, sampling, client options).
      timeout_s: the deadline of one answer, retries included.
      concurrency: calls in flight at most.
      backend: replaces the network backend (the simulated LLM).
      count_tokens: token counter for endpoints that report no usage.
    """

    def __init__(self, llm: LLMConfig, *, timeout_s: float, concurrency: int, backend=None,
                 count_tokens=None):  # fmt: skip
        options = llm.client()
        options = ClientConfig(
            concurrency=1,
            timeout_s=min(options.timeout_s, timeout_s),
            connect_timeout_s=options.connect_timeout_s,
            retry=options.retry,
            max_failed_questions=sys.maxsize,
            chars_per_token=options.chars_per_token,
        )
        self.model = llm.model
        self.simulated = backend is not None and llm.simulated
        self.timeout_s = timeout_s
        self._client = LLMClient(
            None if backend is not None else llm.endpoint(),
            params=llm.sampling(),
            options=options,
            backend=backend,
            count_tokens=count_tokens,
        )
        key_env = None if backend is not None else llm.endpoint().api_key_env
        secret = os.environ.get(key_env, "") if key_env else ""
        self._secrets = tuple(s for s in (secret,) if len(s) >= 4)
        # Its own threads: asyncio's default pool has min(32, CPUs + 4) workers, which would
        # cap the deferred requests in flight on a small machine.
        self._pool = concurrent.futures.ThreadPoolExecutor(concurrency, "upstream")
        self._semaphore = asyncio.Semaphore(concurrency)
        self._ids = itertools.count()
        self.on_abandon: Callable[[str], None] | None = None

    def describe(self) -> str:
        return repr(self._client)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def answer(self, messages) -> UpstreamAnswer:
        request = LLMRequest(f"serve-{next(self._ids)}", tuple(messages))
        started, cancel = threading.Event(), threading.Event()

        def call():
            started.set()
            return self._client.complete([request], cancel=cancel)

        try:
            async with self._semaphore:
                loop = asyncio.get_running_loop()
                # Cancelling this (wait_for does on cancellation) cancels the pool's job if no
                # worker has taken it yet.
                future = loop.run_in_executor(self._pool, call)
                (response,) = await asyncio.wait_for(future, self.timeout_s)
        except asyncio.CancelledError:
            cancel.set()
            if self.on_abandon is not None:
                self.on_abandon("in_flight" if started.is_set() else "waiting")
            raise
        except TimeoutError:
            cancel.set()  # past the deadline: no more retries for an answer nobody awaits
            raise UpstreamError(
                "timeout", f"the upstream LLM did not answer within {self.timeout_s:g} s"
            ) from None
        except CoreaError as exc:
            raise UpstreamError("error", self.scrub(str(exc))) from None
        if not response.ok:
            raise UpstreamError("error", self.scrub(response.error))
        return UpstreamAnswer(
            response.text,
            response.prompt_tokens,
            response.completion_tokens,
            response.finish_reason,
            response.attempts,
            response.usage_source,
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

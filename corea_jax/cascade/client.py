"""The LLM client: the only code of the cascade that talks to the network.

`LLMClient.complete(requests)` answers a batch of `LLMRequest`s (one per question) with
`LLMResponse`s, in order. Around a swappable `ChatBackend` (default `OpenAIChatBackend`, the
`openai` SDK against any OpenAI-compatible chat-completions endpoint: vLLM, SGLang, OpenAI,
gateways) it adds:

- the response cache (`ResponseCache`): cached requests are answered without a call, identical
  requests in one batch are sent once, and each answer is stored the moment it arrives (so a
  killed run loses only the calls in flight);
- bounded concurrency: a pool of `concurrency` threads (the SDK's client is thread-safe and
  keeps one connection per thread alive);
- retries: 429, 5xx, 408, timeouts, connection errors and malformed responses (a body that is not
  JSON, no `choices`, no message text) are retried up to `max_attempts` times in all, with
  exponential backoff and jitter; a `Retry-After` / `retry-after-ms` header replaces the backoff
  (capped at `max_retry_after_s`). The SDK's own retries are switched off so these are the only
  ones. Other 4xx (bad key, unknown model, bad request) stop the run at once: every question
  would fail the same way;
- a failure budget: a question that fails `max_attempts` times counts against
  `max_failed_questions` (default 0, counted over the client's lifetime). Past the budget the
  run stops with one `CoreaError` line naming the endpoint, the question and the last fault; the
  answers received so far stay cached, so running again resumes. Within the budget a failed
  question comes back with `error` set (and is not cached);
- usage: token counts come from the response's `usage`; when a server omits it, from
  `count_tokens` (the SLM's tokenizer, say) over the message contents and the answer text
  (`usage_source="tokenizer"`; chat-template tokens are not counted), or, without one, from
  `len(text) / chars_per_token` rounded up (default 4 characters per token [open];
  `usage_source="estimate"`). With `ClientConfig.usage="counted"` every answer, cached ones
  included, is counted by `count_tokens` whatever the server says: a `TokenCounter` can count
  as the SLM's own rows do (its chat template rendered around the messages, the end-of-turn
  token of a finished reply), so both models of a cascade are billed alike (PAPER.md, "A cost
  model that is fair to both sides"); its `source` is the `usage_source`.

Settings (`LLMEndpoint`, `SamplingParams`, `ClientConfig`, `RetryPolicy`) and their defaults are
in `corea_jax.cascade.endpoint`.

Secrets: the API key is read from the environment variable *named* by `LLMEndpoint.api_key_env`
when the client is built, given to the SDK, and nowhere else: not in requests' cache keys or rows,
not in `repr`s, logs or error messages (error text from the server is scrubbed of it).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from corea_jax.cascade.backend import (
    ChatBackend,
    ChatReply,
    OpenAIChatBackend,
    PermanentError,
    TransientError,
)
from corea_jax.cascade.cache import ResponseCache, cache_key, redact_url
from corea_jax.cascade.endpoint import NO_KEY, ClientConfig, LLMEndpoint, SamplingParams
from corea_jax.errors import CoreaError

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Token counting


@dataclasses.dataclass(frozen=True)
class TokenCounter:
    """How an answer's tokens are counted when they are not the server's.

    Attributes:
      text: tokens of a plain text (no special tokens added).
      source: the `usage_source` of what it counts ("tokenizer", "estimate", "slm_tokenizer").
      chat: tokens of the messages as a chat template renders them, the generation prompt
        included (the prompt a model is fed); None counts each message's content alone, with
        no chat-template tokens.
      end_of_turn: tokens a finished reply (finish reason "stop") ends with that its text does
        not show (an EOS / end-of-turn token); 0 counts the text alone.
    """

    text: Callable[[str], int]
    source: str = "tokenizer"
    chat: Callable[[list[dict]], int] | None = None
    end_of_turn: int = 0

    def prompt(self, messages: Sequence[Mapping[str, str]]) -> int:
        if self.chat is None:
            return sum(self.text(m["content"]) for m in messages)
        return self.chat([dict(m) for m in messages])

    def completion(self, text: str, finish_reason: str | None) -> int:
        return self.text(text) + (self.end_of_turn if finish_reason == "stop" else 0)

    def contents(self) -> TokenCounter:
        """The same tokenizer over the contents alone (the fallback of `usage="api"`)."""
        return TokenCounter(self.text)


def as_counter(count_tokens, chars_per_token: float) -> TokenCounter:
    """`count_tokens` (a `TokenCounter`, a `text -> tokens` function, or None: characters /
    `chars_per_token` rounded up) as a `TokenCounter`."""
    if isinstance(count_tokens, TokenCounter):
        return count_tokens
    if count_tokens is not None:
        return TokenCounter(count_tokens)
    return TokenCounter(lambda s: math.ceil(len(s) / chars_per_token), "estimate")


# ---------------------------------------------------------------------------------------------
# Requests and responses


@dataclasses.dataclass(frozen=True)
class LLMRequest:
    """One question for the LLM: an id (for reports; not part of the cache key) and the chat
    messages, each `{"role": ..., "content": ...}`."""

    qid: str
    messages: tuple[Mapping[str, str], ...]

    def __post_init__(self):
        messages = tuple(dict(m) for m in self.messages)
        for i, m in enumerate(messages):
            if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise CoreaError(f"question {self.qid}: message {i} needs string role and content")
        if not messages:
            raise CoreaError(f"question {self.qid}: no messages")
        object.__setattr__(self, "messages", messages)

    @classmethod
    def from_prompt(cls, qid: str, prompt: str, system: str | None = None) -> LLMRequest:
        messages = [{"role": "system", "content": system}] if system else []
        return cls(str(qid), tuple([*messages, {"role": "user", "content": prompt}]))


@dataclasses.dataclass(frozen=True)
class LLMResponse:
    """The LLM's answer to one `LLMRequest`.

    Attributes:
      qid: the request's id.
      text: the answer text ("" when `error` is set).
      prompt_tokens, completion_tokens: token usage (see `usage_source`).
      usage_source: "api" (the response's `usage`), "tokenizer" (`count_tokens`), "estimate"
        (characters / `chars_per_token`) or a `TokenCounter`'s own source ("slm_tokenizer").
      finish_reason: as reported by the server ("stop", "length", ...), or None.
      cached: answered from the cache, without a call.
      attempts: calls made for it in this run (0 when cached).
      latency_s: seconds from the first attempt to the answer (0 when cached).
      error: why it failed, for a question that failed within the failure budget (its
        `usage_source` is then "none" and it is not cached); else None.
    """

    qid: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    usage_source: str
    finish_reason: str | None
    cached: bool = False
    attempts: int = 0
    latency_s: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclasses.dataclass
class ClientStats:
    """What the client did so far: calls sent, answers from the cache, faults by kind."""

    calls: int = 0
    cache_hits: int = 0
    answered: int = 0
    failed_questions: int = 0
    faults: Counter = dataclasses.field(default_factory=Counter)


# ---------------------------------------------------------------------------------------------
# The client


class _Abort(Exception):
    pass


class CallCancelled(Exception):
    """`LLMClient.complete` was cancelled by its caller's event before every answer came."""


class _Stop:
    """The client's own stop flag (a failure, an interruption, the batch done) joined with the
    caller's `cancel` event: set when either is; `wait` (a backoff) ends as soon as either is
    (the caller's event is polled every `poll_s`: threading.Event has no callbacks)."""

    def __init__(self, cancel: threading.Event | None, poll_s: float = 0.02):
        self._own, self._cancel, self._poll_s = threading.Event(), cancel, poll_s

    def set(self) -> None:
        self._own.set()

    def cancelled(self) -> bool:
        return self._cancel is not None and self._cancel.is_set()

    def is_set(self) -> bool:
        return self._own.is_set() or self.cancelled()

    def wait(self, timeout: float) -> bool:
        if self._cancel is None:
            return self._own.wait(timeout)
        deadline = time.monotonic() + timeout
        while not self.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._own.wait(min(left, self._poll_s))
        return True


class LLMClient:
    """Answers batches of questions through a backend, with cache, concurrency and retries.

    Args:
      endpoint: where the LLM is (`LLMEndpoint`); its key is read from the environment here.
        None with a `backend` that names itself (`backend.identity` and `backend.model`, e.g.
        the in-process simulated LLM): the cache then keys on that identity.
      params: sampling parameters (`SamplingParams`), sent with every request.
      options: concurrency, timeouts, retries, failure budget (`ClientConfig`).
      cache: the response cache, or None for no cache.
      count_tokens: the token counter for servers that omit `usage`, and for every answer with
        `options.usage="counted"`: a `TokenCounter`, or a `text -> tokens` function (e.g. the
        SLM tokenizer's `lambda s: len(tok.encode(s))`, over the message contents); None falls
        back to characters / `chars_per_token`.
      backend: replaces the `openai` SDK backend (tests, other transports).
      seed: seeds the backoff jitter.
    """

    def __init__(
        self,
        endpoint: LLMEndpoint | None,
        *,
        params: SamplingParams | None = None,
        options: ClientConfig | None = None,
        cache: ResponseCache | None = None,
        count_tokens: TokenCounter | Callable[[str], int] | None = None,
        backend: ChatBackend | None = None,
        seed: int = 0,
    ):
        if endpoint is None and backend is None:
            raise CoreaError("LLMClient: give an endpoint or a backend")
        self.endpoint = endpoint
        # What answers, for cache keys and messages: the endpoint's URL, or the backend's name.
        self.source = endpoint.base_url if endpoint is not None else backend.identity
        self.model = endpoint.model if endpoint is not None else backend.model
        self.params = params if params is not None else SamplingParams()
        self.options = options if options is not None else ClientConfig()
        self.cache = cache
        self.counter = as_counter(count_tokens, self.options.chars_per_token)
        self.stats = ClientStats()
        key = endpoint.read_api_key() if backend is None else None
        self._secrets = tuple(s for s in (key,) if s and s != NO_KEY)
        self._backend = backend or OpenAIChatBackend(
            endpoint.base_url,
            endpoint.model,
            key,
            self.options.timeout_s,
            self.options.connect_timeout_s,
        )
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LLMClient(endpoint={redact_url(self.source)!r}, model={self.model!r})"

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def key(self, request: LLMRequest) -> str:
        """The cache key of `request` under this client's endpoint, model and parameters."""
        return cache_key(self.source, self.model, request.messages, self.params.as_dict())

    def complete(
        self,
        requests: Sequence[LLMRequest],
        progress: Callable[[LLMResponse], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[LLMResponse]:
        """One `LLMResponse` per request, in order. `progress` is called (on this thread) once
        per distinct request as it is answered, from the cache or the network.

        `cancel`: the caller's abort hook (`corea-jax serve` sets it when the request's client
        goes away or its deadline passes). Once set, no new attempt starts and a backoff wait
        ends at once; `CallCancelled` is raised. A call already on the wire is not cut (the
        `openai` SDK's synchronous transport cannot be interrupted from another thread): it
        ends by its own timeout and its answer, if any, is still cached."""
        keys = [self.key(r) for r in requests]
        unique = dict(zip(keys, requests, strict=True))
        answers: dict[str, LLMResponse] = {}
        if self.cache is not None:
            for key, payload in self.cache.get_many(unique).items():
                answers[key] = self._from_payload(unique[key], payload)
                self.stats.cache_hits += 1
                if progress:
                    progress(answers[key])
        todo = [k for k in unique if k not in answers]
        if todo:
            answers.update(self._call_all({k: unique[k] for k in todo}, progress, cancel))
        out = []
        for key, request in zip(keys, requests, strict=True):
            answer = answers[key]
            out.append(answer if answer.qid == request.qid else _renamed(answer, request.qid))
        return out

    def _call_all(
        self, todo: dict[str, LLMRequest], progress, cancel: threading.Event | None = None
    ) -> dict[str, LLMResponse]:
        abort = _Stop(cancel)
        failure: list[str] = []
        answers = {}
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(self.options.concurrency, len(todo)), thread_name_prefix="llm"
        )
        try:
            futures = {
                pool.submit(self._call_one, key, request, abort, failure): key
                for key, request in todo.items()
            }
            for future in concurrent.futures.as_completed(futures):
                try:
                    answer = future.result()
                except _Abort:
                    break
                answers[futures[future]] = answer
                if progress:
                    progress(answer)
        except BaseException:
            # Interrupted (or a cache error): stop retrying and do not wait for calls in flight;
            # whatever they bring back is still cached.
            abort.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        abort.set()
        pool.shutdown(wait=not abort.cancelled(), cancel_futures=True)
        if abort.cancelled() and len(answers) < len(todo):
            raise CallCancelled(f"cancelled with {len(todo) - len(answers)} questions unanswered")
        if failure:
            where = f"LLM endpoint {redact_url(self.source)} (model {self.model})"
            cached = (
                f"; answers received so far are cached in {self.cache.path}, run again to resume"
                if self.cache is not None
                else ""
            )
            raise CoreaError(f"{where}: {failure[0]}{cached}")
        return answers

    def _call_one(self, key, request: LLMRequest, abort: _Stop, failure: list) -> LLMResponse:
        retry = self.options.retry
        params = self.params.as_dict()
        start = time.monotonic()
        last = ""
        for attempt in range(1, retry.max_attempts + 1):
            if abort.is_set():
                raise _Abort
            with self._lock:
                self.stats.calls += 1
            try:
                reply = self._backend.chat(request.messages, params)
            except TransientError as exc:
                last = self._scrub(str(exc))
                with self._lock:
                    self.stats.faults[exc.kind] += 1
                log.debug("question %s attempt %d: %s", request.qid, attempt, last)
                if attempt < retry.max_attempts:
                    with self._lock:
                        delay = retry.delay(attempt, exc.retry_after, self._rng)
                    if abort.wait(delay):
                        raise _Abort from None
                continue
            except PermanentError as exc:
                message = f"question {request.qid}: {self._scrub(str(exc))}"
                if exc.status in (401, 403):
                    name = self.endpoint.api_key_env if self.endpoint is not None else None
                    message += f" (check the key in ${name})" if name else " (no key was sent)"
                self._fail(failure, abort, message)
                raise _Abort from None
            answer = self._answer(request, reply, attempt, time.monotonic() - start)
            if self.cache is not None:
                self.cache.put(
                    key,
                    self.source,
                    self.model,
                    {"messages": list(request.messages), "params": params},
                    self._payload(answer),
                )
            with self._lock:
                self.stats.answered += 1
            return answer
        reason = f"question {request.qid} failed after {retry.max_attempts} attempts (last: {last})"
        with self._lock:
            self.stats.failed_questions += 1
            over = self.stats.failed_questions > self.options.max_failed_questions
        if over:
            budget = self.options.max_failed_questions
            self._fail(
                failure, abort, f"{reason}; failure budget of {budget} failed questions spent"
            )
            raise _Abort
        log.warning("%s; within the failure budget", reason)
        return LLMResponse(
            request.qid,
            "",
            0,
            0,
            "none",
            None,
            False,
            retry.max_attempts,
            time.monotonic() - start,
            reason,
        )

    def _fail(self, failure: list, abort: _Stop, message: str) -> None:
        with self._lock:
            if not failure:
                failure.append(message)
        abort.set()

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _answer(self, request: LLMRequest, reply: ChatReply, attempts: int, latency: float):
        prompt, completion = reply.prompt_tokens, reply.completion_tokens
        source = "api"
        if self.options.usage == "counted" or prompt is None or completion is None:
            source = self.counter.source
            prompt = self.counter.prompt(request.messages)
            completion = self.counter.completion(reply.text, reply.finish_reason)
        return LLMResponse(
            request.qid,
            reply.text,
            int(prompt),
            int(completion),
            source,
            reply.finish_reason,
            False,
            attempts,
            latency,
        )

    @staticmethod
    def _payload(answer: LLMResponse) -> dict:
        fields = ("text", "prompt_tokens", "completion_tokens", "usage_source", "finish_reason")
        return {f: getattr(answer, f) for f in fields}

    def _from_payload(self, request: LLMRequest, payload: Mapping) -> LLMResponse:
        """A cached answer; with `usage="counted"` recounted here, so an answer cached under
        another counter (another SLM's tokenizer, a server's usage) is billed as this run's."""
        try:
            answer = LLMResponse(
                request.qid,
                str(payload["text"]),
                int(payload["prompt_tokens"]),
                int(payload["completion_tokens"]),
                str(payload["usage_source"]),
                payload["finish_reason"],
                cached=True,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CoreaError(
                f"response cache {self.cache.path}: question {request.qid}: bad cached response "
                f"({exc!r})"
            ) from None
        if self.options.usage != "counted":
            return answer
        return dataclasses.replace(
            answer,
            prompt_tokens=int(self.counter.prompt(request.messages)),
            completion_tokens=int(self.counter.completion(answer.text, answer.finish_reason)),
            usage_source=self.counter.source,
        )


def _renamed(answer: LLMResponse, qid: str) -> LLMResponse:
    return dataclasses.replace(answer, qid=qid)

"""The LLM client: the only code of the cascade that talks to the network.

`LLMClient.complete(requests)` answers a batch of `LLMRequest`s (one per question) with
`LLMResponse`s, in order. Around a swappable `ChatBackend` (default `OpenAIChatBackend`, the
`openai` SDK against any OpenAI-compatible chat-completions endpoint: vLLM, SGLang, OpenAI,
gateways) it adds:

- the response cache (`ResponseCache`): cached requests are answered without a call, identical
  requests in one batch are sent once, and each answer is stored the moment it arrives;
- bounded concurrency: a pool of `concurrency` threads (the SDK's client is thread-safe and
  keeps one connection per thread alive);
- retries: 429, 5xx, 408, timeouts, connection errors and malformed responses (a body that is not
  JSON, no `choices`, no message text) are retried up to `max_attempts` times in all, with
  exponential backoff and jitter; a `Retry-After` / `retry-after-ms` header replaces the backoff
  (capped at `max_retry_after_s`). The SDK's own retries are switched off so these are the only
  ones. Other 4xx (bad key, unknown model, bad request) stop the run at once: every question
  would fail the same way;
- a failure budget: a question that fails `max_attempts` times counts against
  `max_failed_questions` (default 0). Past the budget the run stops with one `CoreaError` line
  naming the endpoint, the question and the last fault; the answers received so far stay cached,
  so running again resumes. Within the budget a failed question comes back with `error` set;
- usage: token counts come from the response's `usage`; when a server omits it, from
  `count_tokens` (the SLM's tokenizer, say) over the message contents and the answer text
  (`usage_source="tokenizer"`; chat-template tokens are not counted), or, without one, from
  `len(text) / chars_per_token` rounded up (default 4 characters per token [open];
  `usage_source="estimate"`).

Secrets: the API key is read from the environment variable *named* by `LLMEndpoint.api_key_env`
when the client is built, given to the SDK, and nowhere else: not in requests' cache keys or rows,
not in `repr`s, logs or error messages (error text from the server is scrubbed of it).

Defaults where nothing is prescribed (all parameters): `concurrency=16`, `timeout_s=300`
(a 2k-token answer from a 32B model at ~30 tokens/s, plus queueing), `connect_timeout_s=10`,
`max_attempts=6`, backoff from 1 s doubling to at most 60 s with the delay drawn uniformly from
[1 - jitter, 1] x backoff (`jitter=0.5`), `max_retry_after_s=120`, `max_failed_questions=0`,
temperature 0 and `max_tokens=2048` (the paper's response length).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import email.utils
import logging
import math
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from corea_jax.cascade.cache import ResponseCache, cache_key, redact_url
from corea_jax.errors import CoreaError

log = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NO_KEY = "EMPTY"  # what vLLM / SGLang accept when they run without authentication


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True)
class LLMEndpoint:
    """Where the LLM is: an OpenAI-compatible `base_url` (".../v1"), the `model` name it serves,
    and the *name* of the environment variable holding the API key (None: no key, "EMPTY" is
    sent, as vLLM and SGLang expect)."""

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise CoreaError(f"llm.base_url {redact_url(self.base_url)!r}: expected http(s)://...")
        if not self.model:
            raise CoreaError("llm.model: empty model name")
        if self.api_key_env is not None and not _ENV_NAME.fullmatch(self.api_key_env):
            # Never echo the value: it may be the key itself, pasted into the wrong field.
            raise CoreaError(
                "llm.api_key_env must be the *name* of an environment variable (letters, digits, "
                "underscores), not the key itself"
            )

    def read_api_key(self) -> str:
        if self.api_key_env is None:
            return NO_KEY
        key = os.environ.get(self.api_key_env)
        if not key:
            raise CoreaError(
                f"llm.api_key_env: environment variable {self.api_key_env} is not set or empty"
            )
        return key


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters sent with every request (None: not sent). They are part of the cache
    key, so changing one makes new calls."""

    temperature: float | None = 0.0
    top_p: float | None = None
    max_tokens: int | None = 2048
    seed: int | None = None
    stop: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, object]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if out["stop"] is not None:
            out["stop"] = list(out["stop"])
        return {k: v for k, v in out.items() if v is not None}


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Retries of one request; see the module docstring for the defaults."""

    max_attempts: int = 6
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_retry_after_s: float = 120.0

    def __post_init__(self):
        if self.max_attempts < 1:
            raise CoreaError(f"RetryPolicy.max_attempts={self.max_attempts}: must be >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise CoreaError(f"RetryPolicy.jitter={self.jitter}: must be in [0, 1]")

    def delay(self, failures: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after the `failures`-th failed attempt (1-based)."""
        if retry_after is not None:
            # Honour the server, with a little spread so waiting clients do not return in step.
            wait = min(max(retry_after, 0.0), self.max_retry_after_s)
            return wait * (1.0 + 0.1 * self.jitter * rng.random())
        backoff = min(
            self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (failures - 1)
        )
        return backoff * (1.0 - self.jitter * rng.random())


@dataclasses.dataclass(frozen=True)
class ClientOptions:
    """Concurrency, timeouts (seconds), retries and the failure budget of an `LLMClient`."""

    concurrency: int = 16
    timeout_s: float = 300.0
    connect_timeout_s: float = 10.0
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    max_failed_questions: int = 0
    chars_per_token: float = 4.0

    def __post_init__(self):
        if self.concurrency < 1:
            raise CoreaError(f"ClientOptions.concurrency={self.concurrency}: must be >= 1")
        if not self.timeout_s > 0:
            raise CoreaError(f"ClientOptions.timeout_s={self.timeout_s}: must be > 0")


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
      usage_source: "api" (the response's `usage`), "tokenizer" (`count_tokens`) or "estimate"
        (characters / `chars_per_token`).
      finish_reason: as reported by the server ("stop", "length", ...), or None.
      cached: answered from the cache, without a call.
      attempts: calls made for it in this run (0 when cached).
      latency_s: seconds from the first attempt to the answer (0 when cached).
      error: why it failed, for a question that failed within the failure budget; else None.
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
# Backends: one call, no retries


@dataclasses.dataclass(frozen=True)
class ChatReply:
    """A backend's answer; token counts are None when the server did not report them."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None


class TransientError(Exception):
    """A fault worth retrying; `kind` names it for the stats, `retry_after` is the server's ask."""

    def __init__(self, kind: str, detail: str = "", retry_after: float | None = None):
        super().__init__(detail or kind)
        self.kind, self.retry_after = kind, retry_after


class PermanentError(Exception):
    """A fault that retrying cannot fix (bad key, unknown model, bad request)."""


class ChatBackend(Protocol):
    def chat(
        self, messages: Sequence[Mapping[str, str]], params: Mapping[str, object]
    ) -> ChatReply:
        """One call. Raises `TransientError` or `PermanentError`; never retries itself."""
        ...

    def close(self) -> None: ...


class OpenAIChatBackend:
    """`chat.completions.create` through the `openai` SDK, its own retries off."""

    def __init__(self, endpoint: LLMEndpoint, api_key: str, options: ClientOptions):
        import openai

        self._openai = openai
        self._model = endpoint.model
        self._timeout_s = options.timeout_s
        self._client = openai.OpenAI(
            base_url=endpoint.base_url,
            api_key=api_key,
            max_retries=0,
            timeout=openai.Timeout(
                options.timeout_s, connect=min(options.connect_timeout_s, options.timeout_s)
            ),
        )

    def __repr__(self) -> str:
        return f"OpenAIChatBackend(model={self._model!r})"

    def chat(self, messages, params) -> ChatReply:
        openai = self._openai
        body = {"model": self._model, "messages": list(messages), **params}
        try:
            # The SDK's generic `post` (its documented way to make custom requests) rather than
            # `chat.completions.create`: the typed path validates the request against its
            # TypedDicts and builds pydantic models for the reply, ~1 ms of CPU per call that
            # adds up at 64 calls in flight. The transport, auth, timeouts and HTTP error
            # classes are the SDK's either way; the reply is checked by `parse_chat_completion`.
            data = self._client.post("/chat/completions", cast_to=object, body=body)
        except openai.APITimeoutError:
            raise TransientError("timeout", f"no answer within {self._timeout_s:g} s") from None
        except openai.APIConnectionError as exc:
            cause = type(exc.__cause__ or exc).__name__
            raise TransientError("connection", f"connection error ({cause})") from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            detail = _error_message(exc)
            if status in (408, 409, 429) or status >= 500:
                kind = "rate_limit" if status == 429 else f"http_{status}"
                retry_after = _retry_after(exc.response.headers)
                raise TransientError(kind, f"HTTP {status}: {detail}", retry_after) from None
            raise PermanentError(f"HTTP {status}: {detail}") from None
        except (openai.APIResponseValidationError, ValueError) as exc:
            kind = type(exc).__name__
            raise TransientError("malformed", f"malformed response ({kind})") from None
        return parse_chat_completion(data)

    def close(self) -> None:
        self._client.close()


def parse_chat_completion(data: object) -> ChatReply:
    """The first choice's text, usage and finish reason from a decoded chat-completion body;
    anything else (not an object, no or empty `choices`, no message text) is a `TransientError`
    ("malformed" or "empty_choices"). A missing or partial `usage` gives None token counts."""
    if not isinstance(data, Mapping) or "choices" not in data:
        raise TransientError("malformed", "malformed response (not a chat completion)")
    choices = data["choices"]
    if not isinstance(choices, list) or not choices:
        raise TransientError("empty_choices", "malformed response (empty choices)")
    choice = choices[0] if isinstance(choices[0], Mapping) else {}
    message = choice.get("message")
    text = message.get("content") if isinstance(message, Mapping) else None
    if not isinstance(text, str):
        raise TransientError("malformed", "malformed response (no message text)")
    usage = data.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    counts = [
        n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None
        for n in (prompt, completion)
    ]
    finish = choice.get("finish_reason")
    return ChatReply(text, counts[0], counts[1], finish if isinstance(finish, str) else None)


def _error_message(exc) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        body = body.get("error", body)
        if isinstance(body, Mapping):
            body = body.get("message", body)
    return str(body if body is not None else exc.message)[:200]


def _retry_after(headers) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), else None."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                continue
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    return None


# ---------------------------------------------------------------------------------------------
# The client


class _Abort(Exception):
    pass


class LLMClient:
    """Answers batches of questions through a backend, with cache, concurrency and retries.

    Args:
      endpoint: where the LLM is (`LLMEndpoint`); its key is read from the environment here.
      params: sampling parameters (`SamplingParams`), sent with every request.
      options: concurrency, timeouts, retries, failure budget (`ClientOptions`).
      cache: the response cache, or None for no cache.
      count_tokens: the token counter for servers that omit `usage` (e.g. the SLM tokenizer's
        `lambda s: len(tok.encode(s))`); None falls back to characters / `chars_per_token`.
      backend: replaces the `openai` SDK backend (tests, other transports).
      seed: seeds the backoff jitter.
    """

    def __init__(
        self,
        endpoint: LLMEndpoint,
        *,
        params: SamplingParams | None = None,
        options: ClientOptions | None = None,
        cache: ResponseCache | None = None,
        count_tokens: Callable[[str], int] | None = None,
        backend: ChatBackend | None = None,
        seed: int = 0,
    ):
        self.endpoint = endpoint
        self.params = params if params is not None else SamplingParams()
        self.options = options if options is not None else ClientOptions()
        self.cache = cache
        self.count_tokens = count_tokens
        self.stats = ClientStats()
        key = endpoint.read_api_key() if backend is None else None
        self._secrets = tuple(s for s in (key,) if s and s != NO_KEY)
        self._backend = backend or OpenAIChatBackend(endpoint, key, self.options)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"LLMClient(endpoint={redact_url(self.endpoint.base_url)!r}, "
            f"model={self.endpoint.model!r})"
        )

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def key(self, request: LLMRequest) -> str:
        """The cache key of `request` under this client's endpoint, model and parameters."""
        return cache_key(
            self.endpoint.base_url, self.endpoint.model, request.messages, self.params.as_dict()
        )

    def complete(
        self,
        requests: Sequence[LLMRequest],
        progress: Callable[[LLMResponse], None] | None = None,
    ) -> list[LLMResponse]:
        """One `LLMResponse` per request, in order. `progress` is called (on this thread) once
        per distinct request as it is answered, from the cache or the network."""
        keys = [self.key(r) for r in requests]
        unique = dict(zip(keys, requests, strict=True))
        answers: dict[str, LLMResponse] = {}
        if self.cache is not None:
            for key, payload in self.cache.get_many(unique).items():
                answers[key] = self._from_payload(unique[key].qid, payload)
                self.stats.cache_hits += 1
                if progress:
                    progress(answers[key])
        todo = [k for k in unique if k not in answers]
        if todo:
            answers.update(self._call_all({k: unique[k] for k in todo}, progress))
        out = []
        for key, request in zip(keys, requests, strict=True):
            answer = answers[key]
            out.append(answer if answer.qid == request.qid else _renamed(answer, request.qid))
        return out

    def _call_all(self, todo: dict[str, LLMRequest], progress) -> dict[str, LLMResponse]:
        abort = threading.Event()
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
        pool.shutdown(wait=True, cancel_futures=True)
        if failure:
            where = (
                f"LLM endpoint {redact_url(self.endpoint.base_url)} (model {self.endpoint.model})"
            )
            cached = (
                f"; answers received so far are cached in {self.cache.path}, run again to resume"
                if self.cache is not None
                else ""
            )
            raise CoreaError(f"{where}: {failure[0]}{cached}")
        return answers

    def _call_one(
        self, key, request: LLMRequest, abort: threading.Event, failure: list
    ) -> LLMResponse:
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
                self._fail(failure, abort, f"question {request.qid}: {self._scrub(str(exc))}")
                raise _Abort from None
            answer = self._answer(request, reply, attempt, time.monotonic() - start)
            if self.cache is not None:
                self.cache.put(
                    key,
                    self.endpoint.base_url,
                    self.endpoint.model,
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

    def _fail(self, failure: list, abort: threading.Event, message: str) -> None:
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
        if prompt is None or completion is None:
            count = self.count_tokens
            source = "tokenizer"
            if count is None:
                per = self.options.chars_per_token
                count = lambda s: math.ceil(len(s) / per)  # noqa: E731
                source = "estimate"
            prompt = sum(count(m["content"]) for m in request.messages)
            completion = count(reply.text)
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

    def _from_payload(self, qid: str, payload: Mapping) -> LLMResponse:
        try:
            return LLMResponse(
                qid,
                str(payload["text"]),
                int(payload["prompt_tokens"]),
                int(payload["completion_tokens"]),
                str(payload["usage_source"]),
                payload["finish_reason"],
                cached=True,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CoreaError(
                f"response cache {self.cache.path}: question {qid}: bad cached response ({exc!r})"
            ) from None


def _renamed(answer: LLMResponse, qid: str) -> LLMResponse:
    return dataclasses.replace(answer, qid=qid)

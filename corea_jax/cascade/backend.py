"""Chat backends: one call to an LLM endpoint, no retries, faults sorted into two kinds.

A backend's `chat(messages, params)` returns a `ChatReply` or raises `TransientError` (worth
retrying: 408/409/429/5xx, timeouts, connection errors, malformed bodies) or `PermanentError`
(other 4xx: bad key, unknown model, bad request). `LLMClient` adds everything else (cache,
concurrency, retries, budget), so swapping the transport means writing one small class.

`OpenAIChatBackend` speaks to any OpenAI-compatible chat-completions endpoint through the `openai`
SDK, with one departure from the SDK's usual path: it sends the request with the SDK's generic
`post` (its documented way to make custom requests) and checks the decoded body itself
(`parse_chat_completion`) instead of calling `chat.completions.create`, whose request validation
and pydantic reply models cost about 1 ms of CPU per call - a bottleneck at 64 calls in flight
on two cores. Transport, authentication, timeouts and HTTP error classes are the SDK's.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import time
from collections.abc import Mapping, Sequence
from typing import Protocol


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
    """A fault that retrying cannot fix (bad key, unknown model, bad request); `status` is the
    HTTP status when there is one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ChatBackend(Protocol):
    """One call to an LLM. A backend used without an `LLMEndpoint` (the in-process simulated
    LLM, `corea_jax.testing.simulated_llm.SimulatedChatBackend`) also names itself: `identity`
    (what the response cache keys on in place of an endpoint URL) and `model`."""

    def chat(
        self, messages: Sequence[Mapping[str, str]], params: Mapping[str, object]
    ) -> ChatReply:
        """One call. Raises `TransientError` or `PermanentError`; never retries itself."""
        ...

    def close(self) -> None: ...


class OpenAIChatBackend:
    """POST /chat/completions through the `openai` SDK, its own retries off.

    Args:
      base_url, model: the endpoint (".../v1") and the model name it serves.
      api_key: the key itself (the caller reads it from the environment).
      timeout_s, connect_timeout_s: per-call limits in seconds.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str,
        timeout_s: float,
        connect_timeout_s: float,
    ):
        import openai

        self._openai = openai
        self._model = model
        self._timeout_s = timeout_s
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            timeout=openai.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
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
                retry_after = parse_retry_after(exc.response.headers)
                raise TransientError(kind, f"HTTP {status}: {detail}", retry_after) from None
            raise PermanentError(f"HTTP {status}: {detail}", status) from None
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


def parse_retry_after(headers) -> float | None:
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

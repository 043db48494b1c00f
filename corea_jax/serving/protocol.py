"""The OpenAI chat-completions wire format: request validation, response and stream bodies.

Validation is strict where a silent default would mislead: an unknown field, `n > 1`, or a
parameter of the API this server does not implement (tools, logprobs, penalties, ...) is a 400
naming the field, in OpenAI's error layout `{"error": {"message", "type", "param", "code"}}`,
instead of being ignored. `max_tokens` above the server's limit is lowered to it [open: OpenAI
rejects it; lowering keeps clients that send a large default working, and the response's
`finish_reason` says "length" when the limit cut the answer].
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import uuid
from collections.abc import Mapping

ROLES = ("system", "developer", "user", "assistant")
ACCEPTED = frozenset({
    "model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop",
    "n", "stream", "stream_options", "seed", "user", "frequency_penalty", "presence_penalty",
})  # fmt: skip
NOT_IMPLEMENTED = frozenset({
    "tools", "tool_choice", "functions", "function_call", "logprobs", "top_logprobs",
    "logit_bias", "response_format", "audio", "modalities", "prediction", "parallel_tool_calls",
    "reasoning_effort", "web_search_options",
})  # fmt: skip


class APIError(Exception):
    """An error answered to the client in OpenAI's layout; `headers` are extra HTTP headers."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 kind: str = "invalid_request_error", code: str | None = None,
                 headers: Mapping[str, str] | None = None):  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.kind, self.code, self.headers = kind, code, dict(headers or {})

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a request may ask for (`ServerConfig` fills these from the config)."""

    max_tokens: int = 256
    default_max_tokens: int = 256
    max_temperature: float = 2.0
    default_temperature: float = 0.0


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    """A validated request. `temperature` 0 is greedy; `seed` None draws a fresh one."""

    messages: tuple[dict, ...]
    model: str | None
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    seed: int | None


def _bad(message: str, param: str | None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def _number(body, name, lo, hi, default, *, lo_open=False):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"'{name}' must be a number", name)
    if value < lo or value > hi or (lo_open and value == lo):
        left = "(" if lo_open else "["
        raise _bad(f"'{name}' must be in {left}{lo:g}, {hi:g}], got {value!r}", name)
    return float(value)


def _content(message: Mapping, i: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: text only
        texts = []
        for j, part in enumerate(content):
            if not (isinstance(part, Mapping) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):  # fmt: skip
                raise _bad("only text content parts are supported", f"messages[{i}].content[{j}]")
            texts.append(part["text"])
        return "".join(texts)
    raise _bad("'content' must be a string or a list of text parts", f"messages[{i}].content")


def parse_chat_request(raw: bytes, limits: Limits) -> ChatRequest:
    """The request body -> `ChatRequest`, or `APIError` (400) naming the offending field."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"the request body is not valid JSON ({exc})", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object", None, "invalid_json")
    for name in body:
        if name in NOT_IMPLEMENTED:
            raise _bad(f"'{name}' is not supported by this server", name, "unsupported_parameter")
        if name not in ACCEPTED:
            raise _bad(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")
    if "messages" not in body:
        raise _bad("'messages' is a required property", "messages", "missing_required_parameter")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array", "messages")
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise _bad("each message must be an object", f"messages[{i}]")
        extra = sorted(set(m) - {"role", "content", "name"})
        if extra:
            raise _bad(f"unknown message field '{extra[0]}'", f"messages[{i}].{extra[0]}")
        if m.get("role") not in ROLES:
            raise _bad(f"'role' must be one of {list(ROLES)}", f"messages[{i}].role")
        role = "system" if m["role"] == "developer" else m["role"]
        clean.append({"role": role, "content": _content(m, i)})
    if clean[-1]["role"] != "user":
        raise _bad("the last message must be from the user", f"messages[{len(clean) - 1}].role")
    n = body.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise _bad(f"'n' must be 1 on this server (one answer per request), got {n!r}", "n")
    for name in ("frequency_penalty", "presence_penalty"):
        if body.get(name) not in (None, 0, 0.0):
            raise _bad(f"'{name}' is not supported by this server (only 0)", name)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("'model' must be a string", "model")
    temperature = _number(
        body, "temperature", 0.0, limits.max_temperature, limits.default_temperature
    )
    top_p = _number(body, "top_p", 0.0, 1.0, 1.0, lo_open=True)
    name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    max_tokens = body.get(name)
    if max_tokens is None:
        max_tokens = limits.default_max_tokens
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _bad(f"'{name}' must be an integer >= 1", name)
    stop = body.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(stop, list)
        or len(stop) > 4
        or not all(isinstance(s, str) and s for s in stop)
    ):
        raise _bad("'stop' must be a non-empty string or a list of up to 4 of them", "stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, Mapping) or set(options) - {"include_usage"}:
        raise _bad("'stream_options' may only hold 'include_usage'", "stream_options")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad("'seed' must be an integer", "seed")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise _bad("'user' must be a string", "user")
    return ChatRequest(
        messages=tuple(clean),
        model=model,
        temperature=temperature,
        top_p=top_p,
        max_tokens=min(int(max_tokens), limits.max_tokens),
        stop=tuple(stop),
        stream=stream,
        include_usage=bool(options.get("include_usage", False)),
        seed=None if seed is None else int(seed) % 2**31,
    )


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(cid: str, model: str, content: str, finish_reason: str, usage_: dict,
                    extra: dict) -> dict:  # fmt: skip
    """A `chat.completion` object; `extra` (the cascade's metadata) goes under "corea"."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage_,
        "corea": extra,
    }


def stream_chunks(body: dict, include_usage: bool) -> list[dict]:
    """A finished completion as `chat.completion.chunk` objects: the role, the content, the
    finish reason with the cascade's metadata, and (if asked) a last chunk with the usage."""
    base = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"],
            "model": body["model"]}  # fmt: skip
    choice = body["choices"][0]
    delta = lambda d, finish=None: {"index": 0, "delta": d, "finish_reason": finish}  # noqa: E731
    chunks = [
        {**base, "choices": [delta({"role": "assistant", "content": ""})]},
        {**base, "choices": [delta({"content": choice["message"]["content"]})]},
        {**base, "choices": [delta({}, choice["finish_reason"])], "corea": body["corea"]},
    ]
    if include_usage:
        chunks.append({**base, "choices": [], "usage": body["usage"]})
    return chunks

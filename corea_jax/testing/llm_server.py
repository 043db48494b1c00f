"""A small OpenAI-compatible chat-completions server on loopback, with fault injection.

It answers `POST /v1/chat/completions` (and `GET /v1/models`) with a pluggable `AnswerPolicy`:
`policy(messages, params) -> (text, prompt_tokens, completion_tokens)`, where `params` is the
request body without `messages` (model, temperature, max_tokens, ...). It is what the tests and
the client benchmark that exercise HTTP and its faults talk to (the cascade's `llm.simulated`
runs a policy in-process instead: `simulated_llm.SimulatedChatBackend`). It is a *simulated*
LLM and says so: every response carries `X-Simulated-LLM: true`, `system_fingerprint:
"corea-jax-simulated"`, and `/v1/models` lists the model as owned by "corea-jax-simulated".

Faults (`FaultSpec`) reproduce what a remote endpoint does under load: "rate_limit" (429 with
`Retry-After`), "server_error" (500), "unavailable" (503 with `Retry-After`), "slow" (a correct
answer sent after `slow_s`, meant to exceed the client's timeout), "drop" (the connection is
closed without a response), "malformed_json" (200 with a truncated JSON body), "empty_choices"
(200 with `choices: []`) and "no_usage" (a correct answer without the `usage` field). Whether
attempt n of a question is faulty, and how, is a hash of (seed, question, n): the same seed gives
the same faults however requests interleave, and every question is eventually answered.

Choices made here [open, all parameters]: a question is identified by the content of its last
message (`last_message_key`); latency is a fixed `latency_s` sleep per request before anything is
sent; the listen backlog is 256 so a burst of concurrent connections is not refused. It binds to
loopback only (127.0.0.1 or ::1); HTTP/1.1 keep-alive; one thread per connection.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import http.server
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from corea_jax.errors import CoreaError

log = logging.getLogger(__name__)

AnswerPolicy = Callable[[list[dict], dict], tuple[str, int, int]]
FAULT_KINDS = (
    "rate_limit",
    "server_error",
    "unavailable",
    "slow",
    "drop",
    "malformed_json",
    "empty_choices",
    "no_usage",
)
LOOPBACK = ("127.0.0.1", "::1")
SIMULATED = "corea-jax-simulated"


@dataclasses.dataclass(frozen=True)
class FaultSpec:
    """Which faults to inject and how often.

    Attributes:
      rate: probability that an attempt is faulty, in [0, 1].
      kinds: the fault kinds to draw from (uniformly), a subset of `FAULT_KINDS`.
      seed: the seed of the per-(question, attempt) draw.
      retry_after_s: the `Retry-After` sent with 429 and 503 (seconds; also as `retry-after-ms`).
      slow_s: how long a "slow" response stalls before it is sent.
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 0
    retry_after_s: float = 0.05
    slow_s: float = 2.0

    def __post_init__(self):
        if not 0.0 <= self.rate <= 1.0:
            raise CoreaError(f"FaultSpec.rate={self.rate}: must be in [0, 1]")
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown or not self.kinds:
            raise CoreaError(f"FaultSpec.kinds: unknown {sorted(unknown)}; use {FAULT_KINDS}")

    def draw(self, question: str, attempt: int) -> str | None:
        """The fault for `attempt` (0-based) of `question`, or None for a clean answer."""
        if self.rate <= 0.0:
            return None
        digest = hashlib.sha256(f"{self.seed}|{attempt}|{question}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        if u >= self.rate:
            return None
        return self.kinds[int.from_bytes(digest[8:12], "big") % len(self.kinds)]


def last_message_key(messages: Sequence[Mapping[str, str]]) -> str:
    """The default question identity: the content of the last message."""
    return str(messages[-1].get("content", "")) if messages else ""


class ServerStats:
    """Thread-safe counters per question: `requests` received, `answered` (responses that carried
    an answer: clean, "no_usage", and "slow" ones even when the client had given up), and
    `faults` injected per kind."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: collections.Counter[str] = collections.Counter()
        self.answered: collections.Counter[str] = collections.Counter()
        self.faults: collections.Counter[str] = collections.Counter()

    def begin(self, question: str) -> int:
        """Count a request for `question`; returns its 0-based attempt number."""
        with self._lock:
            attempt = self.requests[question]
            self.requests[question] += 1
            return attempt

    def record(self, question: str, fault: str | None, answered: bool) -> None:
        with self._lock:
            if fault is not None:
                self.faults[fault] += 1
            if answered:
                self.answered[question] += 1

    def snapshot(self) -> dict[str, collections.Counter]:
        with self._lock:
            return {
                "requests": collections.Counter(self.requests),
                "answered": collections.Counter(self.answered),
                "faults": collections.Counter(self.faults),
            }

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(self.requests.values())


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # A client that hung up (killed, timed out) is business as usual here, not a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            log.debug("simulated LLM: client %s went away", client_address)
            return
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "corea-jax-simulated-llm"
    owner: SimulatedLLMServer  # set on a per-server subclass

    def log_message(self, format, *args):
        # The default writes every request line to stderr; headers (the API key) are never logged.
        log.debug("simulated LLM: %s", format % args)

    def do_GET(self):
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            model = {"id": self.owner.model, "object": "model", "owned_by": SIMULATED}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_error(404, f"no route {self.path}", "not_found_error")

    def do_POST(self):
        try:
            self._post()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the client gave up (e.g. it timed out on "slow")

    def _post(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        owner = self.owner
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            return self._send_error(404, f"no route {self.path}", "not_found_error")
        if owner.api_key is not None:
            presented = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if presented != owner.api_key:
                # Echoed in full on purpose, like a careless gateway: clients must scrub it.
                message = f"Incorrect API key provided: {presented}"
                return self._send_error(401, message, "invalid_api_key")
        try:
            body = json.loads(raw)
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
        except (ValueError, KeyError, TypeError) as exc:
            return self._send_error(400, f"bad request body: {exc}", "invalid_request_error")
        if body.get("model") != owner.model:
            return self._send_error(
                404, f"model {body.get('model')!r} does not exist", "model_not_found"
            )
        question = owner.question_key(messages)
        attempt = owner.stats.begin(question)
        fault = owner.faults.draw(question, attempt)
        if owner.latency_s > 0:
            time.sleep(owner.latency_s)
        if fault not in (None, "no_usage", "slow"):
            owner.stats.record(question, fault, answered=False)
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault in ("rate_limit", "unavailable"):
            code = 429 if fault == "rate_limit" else 503
            seconds = owner.faults.retry_after_s
            headers = {"Retry-After": f"{seconds:g}", "retry-after-ms": f"{seconds * 1000:.0f}"}
            return self._send_error(code, f"simulated {fault}", fault, headers)
        if fault == "server_error":
            return self._send_error(500, "simulated server error", "server_error")
        if fault == "malformed_json":
            return self._send_raw(200, b'{"id": "chatcmpl-x", "choices": [{"index": 0, "mess')
        params = {k: v for k, v in body.items() if k != "messages"}
        try:
            text, prompt_tokens, completion_tokens = owner.policy(messages, params)
        except Exception as exc:  # a bug in the policy: say so instead of dropping the line
            log.exception("simulated LLM: the answering policy failed")
            message = f"answering policy failed: {type(exc).__name__}: {exc}"
            return self._send_error(500, message, "server_error")
        reply = {
            "id": f"chatcmpl-sim-{attempt}-{hashlib.sha1(question.encode()).hexdigest()[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": owner.model,
            "system_fingerprint": SIMULATED,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": int(prompt_tokens),
                "completion_tokens": int(completion_tokens),
                "total_tokens": int(prompt_tokens) + int(completion_tokens),
            },
        }
        if fault == "empty_choices":
            reply["choices"] = []
        elif fault == "no_usage":
            del reply["usage"]
        elif fault == "slow":
            time.sleep(owner.faults.slow_s)
        if fault in (None, "no_usage", "slow"):
            owner.stats.record(question, fault, answered=True)
        self._send_json(200, reply)

    def _send_error(self, code: int, message: str, kind: str, headers=None):
        body = {"error": {"message": message, "type": kind, "code": kind}}
        self._send_json(code, body, headers)

    def _send_json(self, code: int, body, headers=None):
        self._send_raw(code, json.dumps(body).encode(), headers)

    def _send_raw(self, code: int, data: bytes, headers=None):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Simulated-LLM", "true")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        # Headers and body in one send: two small writes would meet Nagle's algorithm and the
        # client's delayed ACK, ~40 ms per response.
        self._headers_buffer.extend([b"\r\n", data])
        self.flush_headers()


class SimulatedLLMServer:
    """The loopback server; a context manager that starts it on a free port and stops it.

    Args:
      policy: answers a request: `policy(messages, params) -> (text, prompt_tokens,
        completion_tokens)`. Called from the server's threads; it must be thread-safe.
      model: the model name it serves (other names get 404, as a real endpoint does).
      latency_s: seconds each request waits before it is answered.
      faults: the fault injection (`FaultSpec`; none by default).
      api_key: if set, requests without `Authorization: Bearer <api_key>` get 401, whose
        message echoes the key presented (the worst case a client must keep out of its logs).
      host, port: loopback address; port 0 picks a free port.
      question_key: identifies the question of a request, for the per-question counters and
        the fault draw (default: the content of the last message).
    """

    def __init__(
        self,
        policy: AnswerPolicy,
        *,
        model: str = "simulated-llm",
        latency_s: float = 0.0,
        faults: FaultSpec | None = None,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        question_key: Callable[[Sequence[Mapping[str, str]]], str] = last_message_key,
    ):
        if host == "localhost":
            host = "127.0.0.1"
        if host not in LOOPBACK:
            raise CoreaError(f"simulated LLM host {host!r}: only loopback {LOOPBACK} is allowed")
        self.policy, self.model, self.latency_s = policy, model, latency_s
        self.faults = faults if faults is not None else FaultSpec()
        self.api_key, self.question_key = api_key, question_key
        self.stats = ServerStats()
        self._address = (host, port)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the simulated LLM server is not running")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        host = self._address[0]
        return f"http://{'[::1]' if host == '::1' else host}:{self.port}/v1"

    def start(self) -> SimulatedLLMServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        server_cls = _HTTPServer
        if self._address[0] == "::1":
            server_cls = type("HTTPServer6", (_HTTPServer,), {"address_family": socket.AF_INET6})
        self._httpd = server_cls(self._address, handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="simulated-llm",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None

    def __enter__(self) -> SimulatedLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_simulated_llm(policy: AnswerPolicy, **options) -> SimulatedLLMServer:
    """`with serve_simulated_llm(policy, latency_s=0.2) as server: ... server.base_url ...`"""
    return SimulatedLLMServer(policy, **options)

"""`corea-jax serve` through the stock `openai` client on loopback, with a stand-in SLM engine.

The stand-in (`FakeEngine`) answers in the project's output format with the confidence written
in the question ("[conf 0.9]"), so routing is deterministic; everything else is the real server:
validation, the cascade, the upstream client against the simulated LLM (in-process, or the
loopback server with fault injection), metrics. The real engine is tested in
tests/test_serve_engine.py and the command end to end in tests/test_serve_cli.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import gc
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
from tiny_models import make_tokenizer

from corea_jax.cascade import LLMConfig, TransientError
from corea_jax.models import load_tokenizer
from corea_jax.serving import (
    BackgroundServer,
    CascadeService,
    EngineConfig,
    ServeConfig,
    ServerMetrics,
    Upstream,
    build_app,
)
from corea_jax.serving.engine import Completion, QueueFull
from corea_jax.serving.settings import ServerConfig, SLMServeConfig, TauSource
from corea_jax.serving.upstream import UpstreamError
from corea_jax.testing.llm_server import FaultSpec, SimulatedLLMServer
from corea_jax.testing.simulated_llm import SimulatedChatBackend

TAU = 0.7
KEY = "sk-LEAKCHECK-5f1d2c3b4a"


class FakeEngine:
    """The engine interface (`submit`, `warmup`, `start`, `stop`, `queue_depth`, `live_rows`):
    answers "<answer>slm:QUESTION</answer>" with the confidence of "[conf X]" in the prompt
    ("[conf none]": no confidence tag) after `delay_s`; `hold` keeps every answer back."""

    def __init__(self, tokenizer, delay_s=0.0, max_queue=64):
        self.tokenizer, self.delay_s, self.max_queue = tokenizer, delay_s, max_queue
        self.hold = threading.Event()
        self.submitted = []
        self.cancelled = []
        self._pending = []
        self._lock = threading.Lock()

    queue_depth = property(lambda self: len(self._pending))
    live_rows = 0

    def warmup(self):
        return 0.0

    def start(self):
        return self

    def stop(self, drain=True, timeout_s=30.0):
        self.hold.clear()

    def submit(self, g):
        with self._lock:
            if len(self._pending) >= self.max_queue:
                raise QueueFull(3.0)
            self._pending.append(g)
            self.submitted.append(g)
        text = self.tokenizer.decode(g.prompt)
        question = text.rsplit("user\n", 1)[-1].split("<|im_end|>")[0]
        conf = re.search(r"\[conf ([0-9.]+|none)\]", question)
        conf = conf.group(1) if conf else "0.9"
        tail = "" if conf == "none" else f"<confidence>{conf}</confidence>"
        answer = f"<think>fake</think><answer>slm:{question}</answer>{tail}"
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"][: g.max_tokens]
        result = Completion(answer, tuple(ids), len(g.prompt), len(ids), "stop", 0.0, 1)

        def finish():
            time.sleep(self.delay_s)
            while self.hold.is_set() and g not in self.cancelled:
                time.sleep(0.01)
            with self._lock:
                if g in self.cancelled:
                    return
                self._pending.remove(g)
            g.future.set_result(result)

        threading.Thread(target=finish, daemon=True).start()
        return g.future

    def cancel(self, g):
        with self._lock:
            if g not in self._pending:
                return ""
            self._pending.remove(g)
            self.cancelled.append(g)
        g.future.cancel()
        return "decoding"


def llm_policy(messages, params):
    del params
    question = messages[-1]["content"]
    text = f"<think>big</think><answer>llm:{question}</answer><confidence>0.95</confidence>"
    return text, 11, 7


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(make_tokenizer(tmp_path_factory.mktemp("tok")))


def make_service(tokenizer, *, llm=None, backend="sim", server=None, engine=None, slm=None,
                 concurrency=8):  # fmt: skip
    llm = llm or LLMConfig(model="Qwen/Qwen2.5-32B-Instruct", simulated=True, max_attempts=1)
    if backend == "sim":
        backend = SimulatedChatBackend(llm_policy, llm.model, "simulated-test")
    config = ServeConfig(
        slm=slm or SLMServeConfig(path="unused", system=""),
        engine=EngineConfig(max_prompt_tokens=200, max_new_tokens=64),
        llm=llm,
        tau=TauSource(value=TAU),
        server=server or ServerConfig(upstream_timeout_s=5.0),
    )
    upstream = Upstream(config.llm, timeout_s=config.server.upstream_timeout_s,
                        concurrency=concurrency, backend=backend)  # fmt: skip
    engine = engine or FakeEngine(tokenizer)
    return CascadeService(config, engine, tokenizer, upstream, TAU, "test", ServerMetrics())


class Served:
    def __init__(self, service):
        self.service = service
        self.server = BackgroundServer(build_app(service)).start()
        self.server.wait_ready(30)
        self.url = self.server.base_url
        self.client = openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0)

    def raw(self, method, path, body=None):
        """(status, headers, decoded JSON or text) without the openai client."""
        data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, headers, text = r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            status, headers, text = e.code, dict(e.headers), e.read().decode()
        try:
            return status, headers, json.loads(text)
        except ValueError:
            return status, headers, text

    def close(self):
        self.server.stop()


@pytest.fixture
def serve():
    started = []

    def start(service):
        started.append(Served(service))
        return started[-1]

    yield start
    for s in started:
        s.close()


def ask(served, question, **kwargs):
    return served.client.chat.completions.create(
        model="corea-cascade", messages=[{"role": "user", "content": question}], **kwargs
    )


def test_confident_answer_is_the_slms_and_unconfident_the_llms(tokenizer, serve):
    s = serve(make_service(tokenizer))
    sure = ask(s, "[conf 0.9] What is 2 + 2?")
    assert sure.choices[0].message.content.startswith("<think>fake</think><answer>slm:")
    meta = sure.model_extra["corea"]
    assert meta["answered_by"] == "slm" and not meta["deferred"] and meta["llm"] is None
    assert meta["slm"]["confidence"] == 0.9 and meta["tau"] == TAU

    unsure = ask(s, "[conf 0.3] What is 2 + 2?")
    assert "<answer>llm:[conf 0.3] What is 2 + 2?</answer>" in unsure.choices[0].message.content
    meta = unsure.model_extra["corea"]
    assert meta["answered_by"] == "llm" and meta["deferred"] and meta["llm"]["simulated"]
    assert meta["slm"]["confidence"] == 0.3

    # No parseable confidence counts as 0 (PAPER.md): deferred.
    assert ask(s, "[conf none] hi").model_extra["corea"]["answered_by"] == "llm"


def test_usage_and_cost_add_up_over_both_sides(tokenizer, serve):
    s = serve(make_service(tokenizer))
    r = ask(s, "[conf 0.2] add up")
    meta, usage = r.model_extra["corea"], r.usage
    slm, llm = meta["slm"], meta["llm"]
    assert (llm["prompt_tokens"], llm["completion_tokens"]) == (11, 7)  # the simulated usage
    assert usage.prompt_tokens == slm["prompt_tokens"] + llm["prompt_tokens"]
    assert usage.completion_tokens == slm["completion_tokens"] + llm["completion_tokens"]
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    prices = s.service.prices
    assert slm["cost_usd"] == pytest.approx(
        float(prices.cost("Qwen/Qwen2.5-7B-Instruct", slm["prompt_tokens"],
                          slm["completion_tokens"])))  # fmt: skip
    assert llm["cost_usd"] == pytest.approx(float(prices.cost("Qwen/Qwen2.5-32B-Instruct", 11, 7)))
    assert meta["cost_usd"] == pytest.approx(slm["cost_usd"] + llm["cost_usd"])
    sure = ask(s, "[conf 0.99] cheap")
    m = sure.model_extra["corea"]
    assert sure.usage.prompt_tokens == m["slm"]["prompt_tokens"]
    assert m["cost_usd"] == pytest.approx(m["slm"]["cost_usd"])


def test_streaming_is_read_by_the_stock_client(tokenizer, serve):
    s = serve(make_service(tokenizer))
    for question, side in (("[conf 0.9] stream me", "slm"), ("[conf 0.1] stream me", "llm")):
        stream = ask(s, question, stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert f"<answer>{side}:{question}</answer>" in text
        finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish[0].model_extra["corea"]["answered_by"] == side
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_sampling_parameters_reach_the_slm(tokenizer, serve):
    engine = FakeEngine(tokenizer)
    s = serve(make_service(tokenizer, engine=engine))
    ask(s, "[conf 0.9] params", temperature=0.7, top_p=0.5, max_tokens=5, stop=["</answer>"],
        seed=42)  # fmt: skip
    g = engine.submitted[-1]
    assert (g.temperature, g.top_p, g.max_tokens, g.stop, g.seed) == (
        0.7, 0.5, 5, ("</answer>",), 42)  # fmt: skip
    ask(s, "[conf 0.9] params", max_tokens=10_000)  # lowered to the server's limit
    assert engine.submitted[-1].max_tokens == 64


@pytest.mark.parametrize(
    "body, status, param",
    [
        (b"{not json", 400, None),
        ({"model": "m"}, 400, "messages"),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "frobnicate": 1}, 400, "frobnicate"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, 400, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": []}, 400, "tools"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 5}, 400, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, "max_tokens"),
        ({"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "x " * 400}]}, 400, "messages"),
    ],
)
def test_bad_requests_get_an_openai_error_naming_the_field(tokenizer, serve, body, status, param):
    s = serve(make_service(tokenizer))
    code, _, out = s.raw("POST", "/v1/chat/completions", body)
    assert code == status
    assert set(out["error"]) == {"message", "type", "param", "code"}
    assert out["error"]["param"] == param and out["error"]["type"] == "invalid_request_error"
    if param == "messages" and "x " in json.dumps(body):
        assert out["error"]["code"] == "context_length_exceeded"


def test_the_stock_client_sees_bad_requests_as_bad_requests(tokenizer, serve):
    s = serve(make_service(tokenizer))
    with pytest.raises(openai.BadRequestError) as e:
        ask(s, "x", n=3)
    assert e.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as e:
        ask(s, "x", extra_body={"mystery": True})
    assert e.value.body["param"] == "mystery"


def test_full_queue_is_429_with_retry_after(tokenizer, serve):
    engine = FakeEngine(tokenizer, max_queue=2)
    engine.hold.set()
    s = serve(make_service(tokenizer, engine=engine))
    pool = concurrent.futures.ThreadPoolExecutor(2)
    held = [pool.submit(ask, s, f"[conf 0.9] held {i}") for i in range(2)]
    deadline = time.monotonic() + 10
    while engine.queue_depth < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    code, headers, out = s.raw(
        "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "one more"}]}
    )
    assert code == 429 and int(headers["retry-after"]) >= 1
    assert out["error"]["type"] == "rate_limit_error"
    engine.hold.clear()
    assert all(f.result(10).model_extra["corea"]["answered_by"] == "slm" for f in held)


def _faulty(kind, **spec):
    return SimulatedLLMServer(llm_policy, model="Qwen/Qwen2.5-32B-Instruct",
                              faults=FaultSpec(rate=1.0, kinds=(kind,), **spec))  # fmt: skip


def _real_llm(server, **kw):
    return LLMConfig(base_url=server.base_url, model="Qwen/Qwen2.5-32B-Instruct",
                     api_key_env="", max_attempts=1, **kw)  # fmt: skip


@pytest.mark.parametrize("policy", ["fallback", "error"])
def test_upstream_failure_follows_the_configured_policy(tokenizer, serve, policy):
    with _faulty("server_error") as llm_server:
        service = make_service(
            tokenizer, llm=_real_llm(llm_server), backend=None,
            server=ServerConfig(upstream_failure=policy, upstream_timeout_s=5.0),
        )  # fmt: skip
        s = serve(service)
        if policy == "fallback":
            r = ask(s, "[conf 0.2] fails upstream")
            meta = r.model_extra["corea"]
            assert meta["answered_by"] == "slm_fallback" and meta["deferred"]
            assert "HTTP 500" in meta["fallback_reason"] and meta["llm"] is None
            assert "<answer>slm:" in r.choices[0].message.content
        else:
            with pytest.raises(openai.APIStatusError) as e:
                ask(s, "[conf 0.2] fails upstream")
            assert e.value.status_code == 502
            assert "upstream LLM failed" in e.value.body["message"]
        assert ask(s, "[conf 0.9] fine").model_extra["corea"]["answered_by"] == "slm"


def test_upstream_timeout_never_hangs_the_request(tokenizer, serve):
    with _faulty("slow", slow_s=5.0) as llm_server:
        s = serve(
            make_service(
                tokenizer,
                llm=_real_llm(llm_server, timeout_s=30.0),
                backend=None,
                server=ServerConfig(upstream_timeout_s=0.5),
            )
        )
        start = time.monotonic()
        r = ask(s, "[conf 0.1] slow upstream")
        assert time.monotonic() - start < 4.0
        meta = r.model_extra["corea"]
        assert meta["answered_by"] == "slm_fallback" and "within 0.5 s" in meta["fallback_reason"]
        _, _, metrics = s.raw("GET", "/metrics")
        assert 'corea_upstream_failures_total{reason="timeout"} 1.0' in metrics


def _wait_for(condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def _wait_for_metrics(served, *lines):
    """The server notices a disconnect on its own time: poll /metrics until it says so."""
    _wait_for(lambda: all(line in served.raw("GET", "/metrics")[2] for line in lines))


def test_a_client_that_disconnects_frees_its_slm_work_and_others_are_served(tokenizer, serve):
    engine = FakeEngine(tokenizer)
    engine.hold.set()  # the SLM never answers while held: the request is decoding
    s = serve(make_service(tokenizer, engine=engine))
    with pytest.raises(openai.APITimeoutError):  # the client gives up and closes its connection
        ask(s, "[conf 0.9] a question nobody waits for", timeout=0.5)
    _wait_for(lambda: engine.cancelled)
    (gone,) = engine.cancelled
    assert gone.future.cancelled() and engine.queue_depth == 0  # its slot is free
    engine.hold.clear()
    r = ask(s, "[conf 0.9] the next one")
    assert r.model_extra["corea"]["answered_by"] == "slm"
    _wait_for_metrics(s, 'corea_abandoned_total{stage="decoding"} 1.0',
                      'corea_requests_total{outcome="abandoned"} 1.0')  # fmt: skip


def test_a_client_that_disconnects_stops_its_upstream_call(tokenizer, serve):
    """One upstream call at a time, each taking 2 s. A's client leaves while A's call is in
    flight (it cannot be interrupted, its answer is dropped); B's leaves while B's call waits
    for the worker A's call holds: B's call is never made. C is then answered."""
    asked = []

    def slow_policy(messages, params):
        asked.append(messages[-1]["content"])
        time.sleep(2.0)
        return llm_policy(messages, params)

    backend = SimulatedChatBackend(slow_policy, "Qwen/Qwen2.5-32B-Instruct", "simulated-test")
    s = serve(make_service(tokenizer, backend=backend, concurrency=1,
                           server=ServerConfig(upstream_timeout_s=30.0)))  # fmt: skip
    for question in ("[conf 0.1] A", "[conf 0.1] B"):  # below tau: deferred
        with pytest.raises(openai.APITimeoutError):
            ask(s, question, timeout=0.6)
    _wait_for_metrics(s, 'corea_abandoned_total{stage="upstream_in_flight"} 1.0',
                      'corea_abandoned_total{stage="upstream_waiting"} 1.0')  # fmt: skip
    r = ask(s, "[conf 0.1] C")
    assert r.model_extra["corea"]["answered_by"] == "llm"
    assert asked == ["[conf 0.1] A", "[conf 0.1] C"]  # B never reached the upstream


def test_request_timeout_is_504_and_stops_the_work(tokenizer, serve):
    engine = FakeEngine(tokenizer)
    engine.hold.set()
    s = serve(make_service(tokenizer, engine=engine,
                           server=ServerConfig(request_timeout_s=0.3)))  # fmt: skip
    start = time.monotonic()
    body = {"messages": [{"role": "user", "content": "[conf 0.9] slow"}]}
    code, _, out = s.raw("POST", "/v1/chat/completions", body)
    assert code == 504 and out["error"]["code"] == "request_timeout"
    assert time.monotonic() - start < 5.0
    assert len(engine.cancelled) == 1 and engine.queue_depth == 0
    _, _, metrics = s.raw("GET", "/metrics")
    assert 'corea_abandoned_total{stage="decoding"} 1.0' in metrics
    assert 'corea_requests_total{outcome="error_504"} 1.0' in metrics


def test_the_upstream_key_never_appears_in_responses_logs_or_metrics(
    tokenizer, serve, monkeypatch, caplog
):
    monkeypatch.setenv("COREA_TEST_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    # This server rejects the key with a 401 whose message echoes it: the worst case.
    with SimulatedLLMServer(llm_policy, model="Qwen/Qwen2.5-32B-Instruct",
                            api_key="the-right-key") as llm_server:  # fmt: skip
        llm = dataclasses.replace(_real_llm(llm_server), api_key_env="COREA_TEST_KEY")
        for policy in ("error", "fallback"):
            s = serve(make_service(tokenizer, llm=llm, backend=None,
                                   server=ServerConfig(upstream_failure=policy)))  # fmt: skip
            seen = []
            code, _, body = s.raw(
                "POST",
                "/v1/chat/completions",
                {"messages": [{"role": "user", "content": "[conf 0.1] q"}]},
            )
            seen.append(json.dumps(body))
            assert code == (502 if policy == "error" else 200)
            stream = ask(s, "[conf 0.1] q", stream=True) if policy == "fallback" else []
            seen += [c.model_dump_json() for c in stream]
            for path in ("/metrics", "/health", "/v1/models"):
                seen.append(str(s.raw("GET", path)[2]))
            assert "401" in seen[0]
            assert not any(KEY in text for text in seen)
    assert KEY not in caplog.text


def test_health_models_and_metrics(tokenizer, serve):
    s = serve(make_service(tokenizer))
    assert s.raw("GET", "/health")[:2][0] == 200
    assert [m.id for m in s.client.models.list()] == ["corea-cascade"]
    ask(s, "[conf 0.9] a")
    ask(s, "[conf 0.1] b")
    s.raw("POST", "/v1/chat/completions", b"nope")
    _, headers, text = s.raw("GET", "/metrics")
    assert headers["content-type"].startswith("text/plain")
    for line in (
        'corea_requests_total{outcome="slm"} 1.0',
        'corea_requests_total{outcome="llm"} 1.0',
        'corea_requests_total{outcome="error_400"} 1.0',
        "corea_deferral_ratio 0.5",
        'corea_tokens_total{kind="prompt",side="llm"} 11.0',
        "corea_queue_depth 0.0",
        "corea_ready 1.0",
    ):
        assert line in text, line
    assert "corea_batch_rows_bucket" in text and "corea_request_latency_seconds_bucket" in text
    assert s.raw("GET", "/nowhere")[0] == 404


def test_health_is_503_until_the_engine_is_warm(tokenizer, serve):
    engine = FakeEngine(tokenizer)
    warm = threading.Event()
    engine.warmup = lambda: warm.wait(10)
    s = Served.__new__(Served)
    service = make_service(tokenizer, engine=engine)
    s.service, s.server = service, BackgroundServer(build_app(service)).start()
    s.url = s.server.base_url
    try:
        code, headers, body = s.raw("GET", "/health")
        assert code == 503 and body["status"] == "warming_up"
        code, _, body = s.raw(
            "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "early"}]}
        )
        assert code == 503 and body["error"]["code"] == "warming_up"
        warm.set()
        s.server.wait_ready(10)
    finally:
        warm.set()
        s.server.stop()


@pytest.mark.parametrize("freeze", [False, True])
def test_gc_freeze_happens_once_warm_and_only_when_configured(tokenizer, freeze):
    service = make_service(tokenizer, server=ServerConfig(upstream_timeout_s=5.0,
                                                          gc_freeze=freeze))  # fmt: skip
    gc.unfreeze()
    try:
        service.warm_up()
        assert service.ready.is_set()
        assert (gc.get_freeze_count() > 0) == freeze
    finally:
        gc.unfreeze()
        service.stop(drain=False)


def test_a_request_past_its_upstream_deadline_stops_the_retries_behind_it():
    """The upstream answers every call with a 429 asking for 30 s. Past the 0.3 s deadline the
    request gets its error, and the client's abort hook ends the backoff: one call made, and the
    only worker thread is free at once (not after 30 s)."""

    class RateLimited:
        identity, model, calls = "rate-limited", "m", 0

        def chat(self, messages, params):
            RateLimited.calls += 1
            raise TransientError("rate_limit", "HTTP 429", retry_after=30.0)

        def close(self):
            pass

    async def ask_once():
        upstream = Upstream(LLMConfig(simulated=True), timeout_s=0.3, concurrency=1,
                            backend=RateLimited())  # fmt: skip
        with pytest.raises(UpstreamError, match="within 0.3 s"):
            await upstream.answer([{"role": "user", "content": "q"}])
        return upstream

    upstream = asyncio.run(ask_once())
    start = time.monotonic()
    assert upstream._pool.submit(lambda: "free").result(timeout=5) == "free"
    assert time.monotonic() - start < 2.0 and RateLimited.calls == 1
    upstream.close()

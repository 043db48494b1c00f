"""The LLM client against the real loopback server: faults, retries, budget, cache, secrets.

Latencies are a few milliseconds and timeouts half a second, so the whole file runs in seconds;
nothing here asserts on timing.
"""

import concurrent.futures
import dataclasses
import email.utils
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time

import openai
import pytest

from corea_jax.cascade import (
    CallCancelled,
    ChatReply,
    ClientConfig,
    LLMClient,
    LLMEndpoint,
    LLMRequest,
    ResponseCache,
    RetryPolicy,
    TransientError,
)
from corea_jax.cascade.backend import parse_chat_completion, parse_retry_after
from corea_jax.errors import CoreaError
from corea_jax.testing import FAULT_KINDS, FaultSpec, SimulatedLLMServer

MODEL = "simulated-llm"


def count_words(text: str) -> int:
    return len(text.split())


def policy(messages, params):
    """A deterministic 'LLM': the question reversed. Token counts use `count_words`, so the
    client's tokenizer fallback (when `usage` is missing) gives the same numbers."""
    question = messages[-1]["content"]
    text = f"<answer>{question[::-1]}</answer><confidence>0.9</confidence>"
    return text, sum(count_words(m["content"]) for m in messages), count_words(text)


def expected_text(i: int) -> str:
    return policy([{"content": question(i)}], {})[0]


def question(i: int) -> str:
    return f"question number {i}: what is {i} + {i}?"


def make_requests(n: int) -> list[LLMRequest]:
    return [LLMRequest.from_prompt(f"q{i}", question(i), system="be brief") for i in range(n)]


FAST_RETRY = RetryPolicy(max_attempts=12, initial_backoff_s=0.002, max_backoff_s=0.02)


def make_client(server, *, cache=None, concurrency=16, **options) -> LLMClient:
    opts = ClientConfig(
        concurrency=concurrency,
        timeout_s=0.5,
        connect_timeout_s=0.5,
        retry=options.pop("retry", FAST_RETRY),
        **options,
    )
    endpoint = LLMEndpoint(server.base_url, MODEL, api_key_env=None)
    return LLMClient(endpoint, options=opts, cache=cache, count_tokens=count_words)


def comparable(responses):
    return [(r.qid, r.text, r.prompt_tokens, r.completion_tokens, r.ok) for r in responses]


def test_500_questions_with_30_percent_faults_equal_the_fault_free_run(tmp_path):
    requests = make_requests(500)
    with SimulatedLLMServer(policy) as clean:
        reference = make_client(clean).complete(requests)
    assert [r.text for r in reference] == [expected_text(i) for i in range(500)]
    assert {r.usage_source for r in reference} == {"api"}

    faults = FaultSpec(rate=0.3, seed=7, retry_after_s=0.01, slow_s=1.0)
    with SimulatedLLMServer(policy, faults=faults, latency_s=0.001) as server:
        cache = ResponseCache(tmp_path / "llm.sqlite")
        client = make_client(server, cache=cache)
        answered = []
        got = client.complete(requests, progress=answered.append)
        stats = server.stats.snapshot()
        assert comparable(got) == comparable(reference)  # no question lost, same answers
        assert len(answered) == 500 and all(r.ok for r in got)
        assert set(stats["faults"]) == set(FAULT_KINDS)  # every kind was injected
        assert sum(stats["faults"].values()) > 100
        assert client.stats.answered == 500 and client.stats.calls == stats["requests"].total()
        assert "tokenizer" in {r.usage_source for r in got}  # the "no_usage" answers

        # The sweep after the first pass: everything from the cache, not one request.
        again = make_client(server, cache=cache).complete(requests)
        assert server.stats.snapshot()["requests"] == stats["requests"]
        assert comparable(again) == comparable(reference) and all(r.cached for r in again)
        cache.close()


def test_identical_requests_in_a_batch_are_sent_once():
    requests = [LLMRequest.from_prompt(f"id{i}", question(i % 3)) for i in range(9)]
    with SimulatedLLMServer(policy) as server:
        got = make_client(server).complete(requests)
        assert server.stats.total_requests == 3
    assert [r.qid for r in got] == [f"id{i}" for i in range(9)]
    assert [r.text for r in got] == [expected_text(i % 3) for i in range(9)]


@dataclasses.dataclass(frozen=True)
class RecordingRetry(RetryPolicy):
    seen: list = dataclasses.field(default_factory=list, compare=False)

    def delay(self, failures, retry_after, rng):
        self.seen.append(retry_after)
        return 0.0


def test_retry_after_from_the_server_reaches_the_backoff():
    retry = RecordingRetry(max_attempts=20)
    faults = FaultSpec(rate=0.5, kinds=("rate_limit", "unavailable"), retry_after_s=0.25)
    with SimulatedLLMServer(policy, faults=faults) as server:
        got = make_client(server, retry=retry).complete(make_requests(20))
    assert all(r.ok for r in got)
    assert retry.seen and set(retry.seen) == {0.25}


def test_backoff_schedule_and_retry_after_parsing():
    import random

    policy_ = RetryPolicy(initial_backoff_s=1.0, multiplier=2.0, max_backoff_s=5.0, jitter=0.5)
    rng = random.Random(0)
    for failures, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        delay = policy_.delay(failures, None, rng)
        assert full * 0.5 <= delay <= full
    assert 3.0 <= policy_.delay(1, 3.0, rng) <= 3.0 * 1.05  # the server's ask wins
    assert policy_.delay(1, 1e6, rng) <= RetryPolicy().max_retry_after_s * 1.05  # capped
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after({"retry-after": date}) <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


def test_parse_chat_completion_rejects_malformed_bodies_and_tolerates_missing_usage():
    good = {
        "choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    assert parse_chat_completion(good) == ChatReply("hi", 3, 1, "length")
    partial = {"choices": [{"message": {"content": ""}}], "usage": {"prompt_tokens": True}}
    assert parse_chat_completion(partial) == ChatReply("", None, None, None)
    for body, kind in [
        ("<html>busy</html>", "malformed"),
        ({"id": "x"}, "malformed"),
        ({"choices": []}, "empty_choices"),
        ({"choices": [{"message": {"content": None, "tool_calls": []}}]}, "malformed"),
        ({"choices": ["hi"]}, "malformed"),
    ]:
        with pytest.raises(TransientError) as err:
            parse_chat_completion(body)
        assert err.value.kind == kind


def test_failure_budget_stops_the_run_with_one_clear_line(tmp_path):
    faults = FaultSpec(rate=1.0, kinds=("server_error",))
    retry = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.001)
    with SimulatedLLMServer(policy, faults=faults) as server:
        cache = ResponseCache(tmp_path / "c.sqlite")
        client = make_client(server, cache=cache, retry=retry, concurrency=2)
        with pytest.raises(CoreaError) as err:
            client.complete(make_requests(50))
        sent, url = server.stats.total_requests, server.base_url
    message = str(err.value)
    assert "\n" not in message
    assert url in message and MODEL in message
    assert "failed after 3 attempts" in message and "(last: HTTP 500" in message
    assert "failure budget of 0" in message and str(tmp_path / "c.sqlite") in message
    assert sent < 50 * 3  # it stopped instead of burning every question's attempts
    cache.close()


class FlakyBackend:
    """A swapped-in backend: questions containing 'poison' always fail with a 503."""

    def __init__(self):
        self.calls = 0

    def chat(self, messages, params):
        self.calls += 1
        content = messages[-1]["content"]
        if "poison" in content:
            raise TransientError("http_503", "unavailable")
        return ChatReply(content.upper(), None, None, "stop")

    def close(self):
        pass


def test_failures_within_the_budget_come_back_marked():
    endpoint = LLMEndpoint("http://127.0.0.1:9/v1", MODEL, api_key_env=None)
    retry = RetryPolicy(max_attempts=2, initial_backoff_s=0.001)
    options = ClientConfig(concurrency=2, retry=retry, max_failed_questions=1)
    backend = FlakyBackend()
    client = LLMClient(endpoint, options=options, backend=backend)
    requests = [LLMRequest.from_prompt("a", "fine"), LLMRequest.from_prompt("b", "poison")]
    good, bad = client.complete(requests)
    assert good.ok and good.text == "FINE" and good.usage_source == "estimate"
    assert (good.prompt_tokens, good.completion_tokens) == (1, 1)  # ceil(4 chars / 4)
    assert not bad.ok and "failed after 2 attempts" in bad.error and bad.text == ""
    assert backend.calls == 3
    more = [*requests, LLMRequest.from_prompt("c", "more poison")]
    with pytest.raises(CoreaError, match="failure budget of 1 failed questions"):
        LLMClient(endpoint, options=options, backend=FlakyBackend()).complete(more)


def test_unknown_model_stops_at_once():
    with SimulatedLLMServer(policy) as server:
        endpoint = LLMEndpoint(server.base_url, "no-such-model", api_key_env=None)
        client = LLMClient(endpoint, options=ClientConfig(concurrency=4, timeout_s=2))
        with pytest.raises(CoreaError, match="HTTP 404.*no-such-model"):
            client.complete(make_requests(40))
        assert server.stats.total_requests == 0  # rejected before reaching the policy


def test_missing_usage_falls_back_to_the_tokenizer_then_to_an_estimate():
    faults = FaultSpec(rate=1.0, kinds=("no_usage",))
    with SimulatedLLMServer(policy, faults=faults) as server:
        (counted,) = make_client(server).complete(make_requests(1))
        endpoint = LLMEndpoint(server.base_url, MODEL, api_key_env=None)
        (estimated,) = LLMClient(endpoint).complete(make_requests(1))
    prompt_words = count_words("be brief") + count_words(question(0))
    assert counted.usage_source == "tokenizer"
    assert (counted.prompt_tokens, counted.completion_tokens) == (
        prompt_words,
        count_words(expected_text(0)),
    )
    assert estimated.usage_source == "estimate"
    assert estimated.completion_tokens == math.ceil(len(expected_text(0)) / 4)


def test_secret_key_never_reaches_cache_logs_or_outputs(tmp_path, monkeypatch, caplog, capfd):
    secret = "sk-test-" + os.urandom(12).hex()
    monkeypatch.setenv("COREA_TEST_LLM_KEY", secret)
    monkeypatch.setenv("COREA_TEST_WRONG_KEY", secret[::-1])
    for name in (None, "openai", "httpx", "httpx2", "httpcore", "corea_jax"):
        caplog.set_level(logging.DEBUG, logger=name)
    faults = FaultSpec(rate=0.3, retry_after_s=0.01, slow_s=1.0, seed=3)
    path = tmp_path / "llm.sqlite"
    texts = []
    with SimulatedLLMServer(policy, faults=faults, api_key=secret) as server:
        endpoint = LLMEndpoint(server.base_url, MODEL, api_key_env="COREA_TEST_LLM_KEY")
        options = ClientConfig(concurrency=8, timeout_s=0.5, retry=FAST_RETRY)
        with ResponseCache(path) as cache, LLMClient(endpoint, options=options, cache=cache) as c:
            got = c.complete(make_requests(60))
            texts += [repr(c), repr(got), repr(c.stats), repr(endpoint)]
        assert [r.text for r in got] == [expected_text(i) for i in range(60)]
        wrong = LLMEndpoint(server.base_url, MODEL, api_key_env="COREA_TEST_WRONG_KEY")
        with pytest.raises(
            CoreaError, match="HTTP 401.*check the key in .COREA_TEST_WRONG_KEY"
        ) as err:
            LLMClient(wrong, options=options).complete(make_requests(3))
        texts.append(str(err.value))
    out, errs = capfd.readouterr()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for leak in (secret, secret[::-1]):
        assert leak not in caplog.text and leak not in out + errs
        assert leak.encode() not in on_disk
        assert not any(leak in text for text in texts)
    assert "***" in texts[-1]  # the server echoed the wrong key; the client scrubbed it


def test_config_errors_name_the_field_without_echoing_a_key(monkeypatch):
    with pytest.raises(CoreaError, match="api_key_env must be the \\*name\\*") as err:
        LLMEndpoint("http://127.0.0.1:1/v1", MODEL, api_key_env="sk-live-abcdef123")
    assert "sk-live" not in str(err.value)
    monkeypatch.delenv("COREA_TEST_UNSET_KEY", raising=False)
    endpoint = LLMEndpoint("http://127.0.0.1:1/v1", MODEL, api_key_env="COREA_TEST_UNSET_KEY")
    with pytest.raises(CoreaError, match="COREA_TEST_UNSET_KEY is not set"):
        LLMClient(endpoint)
    with pytest.raises(CoreaError, match="base_url"):
        LLMEndpoint("127.0.0.1:8000/v1", MODEL)


def test_server_is_loopback_only_and_labelled_simulated():
    with pytest.raises(CoreaError, match="loopback"):
        SimulatedLLMServer(policy, host="0.0.0.0")
    with SimulatedLLMServer(policy, model="sim-32b") as server:
        models = openai.OpenAI(base_url=server.base_url, api_key="x").models.list()
        assert [(m.id, m.owned_by) for m in models.data] == [("sim-32b", "corea-jax-simulated")]


CHILD = r"""
import json, sys
from corea_jax.cascade import (
    ClientConfig, LLMClient, LLMEndpoint, LLMRequest, ResponseCache, RetryPolicy)

url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
retry = RetryPolicy(max_attempts=12, initial_backoff_s=0.002, max_backoff_s=0.02)
client = LLMClient(
    LLMEndpoint(url, "simulated-llm", api_key_env=None),
    options=ClientConfig(concurrency=4, timeout_s=2.0, retry=retry),
    cache=ResponseCache(path),
    count_tokens=lambda s: len(s.split()),
)
requests = [
    LLMRequest.from_prompt(f"q{i}", f"question number {i}: what is {i} + {i}?", system="be brief")
    for i in range(n)
]
print(json.dumps([r.text for r in client.complete(requests)]))
"""


def run_child(url, path, n, **kwargs):
    args = [sys.executable, "-c", CHILD, url, str(path), str(n)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_run_killed_midway_resumes_without_repeating_answered_questions(tmp_path):
    n, path = 300, tmp_path / "llm.sqlite"
    kinds = tuple(k for k in FAULT_KINDS if k != "slow")
    faults = FaultSpec(rate=0.3, kinds=kinds, seed=11, retry_after_s=0.01)
    with SimulatedLLMServer(policy, faults=faults, latency_s=0.02) as server:
        child = run_child(server.base_url, path, n)
        deadline = time.monotonic() + 120
        while server.stats.total_requests < 80 and child.poll() is None:
            assert time.monotonic() < deadline, "the child never got going"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.communicate()
        assert child.returncode == -signal.SIGKILL

        keyer = make_client(server)
        keys = {keyer.key(r): question(i) for i, r in enumerate(make_requests(n))}
        with ResponseCache(path) as cache:
            done = {keys[k] for k in cache.keys()}
        assert 0 < len(done) < n, "the kill did not land mid-way"
        before = server.stats.snapshot()

        child = run_child(server.base_url, path, n)
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()[-2000:]
        after = server.stats.snapshot()

    assert json.loads(out) == [expected_text(i) for i in range(n)]
    repeated = [q for q in done if after["requests"][q] != before["requests"][q]]
    assert repeated == []  # zero requests for questions answered before the kill
    # Only answers in flight at the kill (at most the concurrency) were delivered twice.
    twice = sum(max(0, count - 1) for count in after["answered"].values())
    assert twice <= 4
    assert set(after["answered"]) == {question(i) for i in range(n)}


class RateLimited:
    """A backend whose every call is a 429 asking for a 30 s wait."""

    identity, model = "rate-limited", "m"

    def __init__(self):
        self.calls = 0

    def chat(self, messages, params):
        self.calls += 1
        raise TransientError("rate_limit", "HTTP 429", retry_after=30.0)

    def close(self):
        pass


def test_the_cancel_hook_ends_a_backoff_and_starts_no_further_attempt():
    """The caller's `cancel` event (what `corea-jax serve` sets when a request is abandoned)
    ends the 30 s backoff after the first 429 at once: one call made, `CallCancelled` raised."""
    backend, cancel = RateLimited(), threading.Event()
    client = LLMClient(None, backend=backend)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(client.complete, make_requests(1), None, cancel)
        deadline = time.monotonic() + 10
        while backend.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
        cancel.set()
        with pytest.raises(CallCancelled):
            future.result(timeout=5)
    assert time.monotonic() - start < 2.0  # not the 30 s the server asked for
    assert backend.calls == 1

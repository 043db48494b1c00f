"""The serving engine (continuous batching) on a tiny random model, and 32 concurrent clients.

The invariant: what a request gets does not depend on what shares its batch. Greedy answers
equal the offline `Sampler`'s for the same prompt, however requests join, leave, and however
often the ring cache wraps; seeded sampling gives the same tokens alone or in a crowd. One
engine (one warm-up) serves every test of this file.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import re
import threading
import time

import jax
import numpy as np
import openai
import pytest
from flax import nnx
from tiny_models import TINY, make_tokenizer

from corea_jax.cascade import LLMConfig
from corea_jax.errors import CoreaError
from corea_jax.models import CausalLM, load_tokenizer
from corea_jax.sampling import Sampler
from corea_jax.serving import (
    BackgroundServer,
    CascadeService,
    Engine,
    EngineConfig,
    Generation,
    ServeConfig,
    ServerMetrics,
    Upstream,
    build_app,
)
from corea_jax.serving.engine import EngineStopped, QueueFull
from corea_jax.serving.lanes import Lanes, lane_configs, make_engine
from corea_jax.serving.settings import SLMServeConfig, TauSource
from corea_jax.testing.simulated_llm import SimulatedChatBackend

MAX_NEW = 32
CONFIG = EngineConfig(
    rows=16,
    segment=8,
    max_prompt_tokens=64,
    max_new_tokens=MAX_NEW,
    prompt_buckets=(),
    row_buckets=(4, 16),
    cache_slots=64 + MAX_NEW,  # the minimum: the ring wraps every few segments
    max_queue=64,
    batch_wait_s=0.02,
)
EOS = 2


@pytest.fixture(scope="module")
def model():
    """A random tiny model whose greedy answers depend on the prompt: weights drawn at 0.02
    (the init) give nearly flat logits and one repeated token, so they are scaled up."""
    model = CausalLM(TINY["qwen2"], rngs=nnx.Rngs(3))
    graphdef, state = nnx.split(model)
    state = jax.tree_util.tree_map_with_path(
        lambda path, x: x if "norm" in jax.tree_util.keystr(path) else x * 7.0, state
    )
    # Committed to the device, as `load_model` places a served model's parameters.
    return nnx.merge(graphdef, jax.device_put(state, jax.local_devices()[0]))


@pytest.fixture(scope="module")
def engine(model):
    metrics = ServerMetrics()
    e = Engine(model, lambda ids: " ".join(map(str, ids)), [EOS], CONFIG, metrics.segment)
    e.metrics = metrics
    e.warmup()
    e.start()
    yield e
    e.stop()


def prompts(n, seed=0, lo=4, hi=60):
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 512, size=int(k)).tolist() for k in rng.integers(lo, hi, size=n)]


def reference(model, batch, max_new=MAX_NEW):
    """The offline sampler's greedy tokens per prompt (EOS dropped)."""
    out = Sampler(model, eos_ids=[EOS]).generate(batch, max_new_tokens=max_new)
    rows = [out.row_tokens(r) for r in range(len(batch))]
    return [r[:-1] if r and r[-1] == EOS else r for r in rows]


def test_greedy_answers_equal_the_offline_sampler_however_requests_join(model, engine, caplog):
    batch = prompts(24)
    budgets = np.random.default_rng(1).integers(1, MAX_NEW + 1, size=len(batch))
    wraps = engine.wraps
    futures = []
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        alone = engine.submit(Generation(batch[0], int(budgets[0]))).result(60)  # smallest shapes
        for i, (p, m) in enumerate(zip(batch, budgets, strict=True)):
            futures.append(engine.submit(Generation(p, int(m))))
            if i % 6 == 5:
                time.sleep(0.05)  # later arrivals join rows that are already decoding
        got = [f.result(120) for f in futures]
    compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    want = reference(model, batch)
    assert alone.token_ids == got[0].token_ids
    for g, w, m in zip(got, want, budgets, strict=True):
        assert list(g.token_ids) == w[:m]
        assert g.finish_reason == ("length" if len(g.token_ids) == m else "stop")
    assert engine.wraps > wraps  # the write pointer went round the ring under live rows
    assert engine.compiles_after_warmup == 0
    assert not compiled, compiled[:1]  # jax itself compiled nothing after the warm-up


def test_a_short_request_does_not_wait_for_a_long_one(engine):
    # A prompt whose greedy answer runs the whole budget (no EOS) on this random model.
    long_prompt = next(
        p for p in prompts(20, 5)
        if len(engine.submit(Generation(p, MAX_NEW)).result(60).token_ids) == MAX_NEW
    )  # fmt: skip
    for _ in range(5):  # on a starved CPU the long one may finish before the short ones arrive
        order = []
        long_ = engine.submit(Generation(long_prompt, MAX_NEW))
        long_.add_done_callback(lambda f, order=order: order.append("long"))
        time.sleep(0.02)
        short = [engine.submit(Generation(p, 2)) for p in prompts(3, 6)]
        live = not long_.done()  # the short ones arrived while the long one was decoding
        for f in short:
            f.add_done_callback(lambda f, order=order: order.append("short"))
        long_.result(60)
        for f in short:
            f.result(60)
        if live:
            break
    assert live, "the long request never overlapped the short ones"
    assert order == ["short"] * 3 + ["long"]  # callbacks run in the engine, in finishing order
    assert all(f.result().batch_rows >= 2 for f in short)  # they joined the live row


def test_abandoned_requests_leave_the_queue_and_free_their_rows(model, engine):
    """Four rows, all decoding long answers; the engine is held after its first segment while
    a queued request and two decoding ones are abandoned (one through `cancel`, one by its
    waiter cancelling the future) and a short one arrives. The short one takes a freed row at
    the next segment and finishes before the long ones; the abandoned ones never get a
    result and each is counted once."""
    long_prompt = next(
        p for p in prompts(20, 5)
        if len(engine.submit(Generation(p, MAX_NEW)).result(60).token_ids) == MAX_NEW
    )  # fmt: skip
    paused, release = threading.Event(), threading.Event()

    def on_segment(rows, steps):
        if not paused.is_set():
            paused.set()
            release.wait(30)

    config = dataclasses.replace(CONFIG, rows=4, row_buckets=(4,))
    e = Engine(model, str, [EOS], config, on_segment)
    e.warmup()
    longs = [Generation(long_prompt, MAX_NEW) for _ in range(4)]
    for g in longs:
        e.submit(g)
    e.start()
    try:
        assert paused.wait(30)  # one segment of the four long rows ran
        queued, short = Generation(long_prompt, MAX_NEW), Generation(prompts(1, 6)[0], 2)
        e.submit(queued)
        e.submit(short)
        assert e.queue_depth == 2
        assert e.cancel(queued) == "queued" and e.queue_depth == 1
        assert e.cancel(longs[1]) == "decoding"
        assert longs[3].future.cancel()  # its waiter gave up without telling the engine
        order = []
        for name, g in [("short", short), *((f"long{i}", longs[i]) for i in (0, 2))]:
            g.future.add_done_callback(lambda f, name=name: order.append(name))
        release.set()
        assert len(short.future.result(60).token_ids) == 2
        done = [longs[i].future.result(60) for i in (0, 2)]
    finally:
        release.set()
        e.stop()
    assert order[0] == "short"  # it did not wait for a long row to finish
    assert all(len(c.token_ids) == MAX_NEW for c in done)  # the others were served in full
    assert queued.future.cancelled() and longs[1].future.cancelled()
    assert e.cancel(longs[3]) == "decoding"  # already dropped: not counted twice
    assert e.abandoned == {"queued": 1, "decoding": 2}
    assert e.cancel(longs[0]) == ""  # finished: nothing to stop


def test_seeded_sampling_does_not_depend_on_the_batch(engine):
    p = prompts(1, 9)[0]
    alone = engine.submit(Generation(p, 16, temperature=1.0, top_p=0.9, seed=7)).result(60)
    crowd = [engine.submit(Generation(q, 16, temperature=1.0, seed=i)) for i, q in
             enumerate(prompts(10, 10))]  # fmt: skip
    again = engine.submit(Generation(p, 16, temperature=1.0, top_p=0.9, seed=7)).result(60)
    for f in crowd:
        f.result(60)
    assert alone.token_ids == again.token_ids
    other = engine.submit(Generation(p, 16, temperature=1.0, top_p=0.9, seed=8)).result(60)
    assert other.token_ids != alone.token_ids
    # A nucleus of (almost) nothing keeps only the top token: greedy.
    greedy = engine.submit(Generation(p, 16)).result(60)
    nucleus = engine.submit(Generation(p, 16, temperature=1.0, top_p=1e-6, seed=3)).result(60)
    assert nucleus.token_ids == greedy.token_ids


def test_stop_strings_cut_the_text(engine):
    p = prompts(1, 11)[0]
    full = engine.submit(Generation(p, 12)).result(60)
    words = full.text.split()
    assert len(words) >= 4
    stop = f" {words[2]}"
    cut = engine.submit(Generation(p, 12, stop=(stop,))).result(60)
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.find(stop)]


def test_queue_limit_and_drain(model):
    config = EngineConfig(rows=4, segment=8, max_prompt_tokens=64, max_new_tokens=MAX_NEW,
                          prompt_buckets=(), row_buckets=(4, 16), max_queue=3,
                          cache_slots=CONFIG.cache_slots)  # fmt: skip
    e = Engine(model, str, [EOS], config)  # not started: nothing leaves the queue
    queued = [e.submit(Generation(p, 4)) for p in prompts(3, 12)]
    with pytest.raises(QueueFull) as err:
        e.submit(Generation([5, 6], 4))
    assert err.value.retry_after_s >= 1
    e.warmup()
    e.start()
    e.stop(drain=True)
    assert all(len(f.result(0).token_ids) == 4 for f in queued)  # drained, not dropped
    with pytest.raises(EngineStopped):
        e.submit(Generation([5, 6], 4))


def test_32_concurrent_clients_get_their_own_answers_in_shared_batches(model, engine, tmp_path):
    tokenizer = load_tokenizer(make_tokenizer(tmp_path / "tok"))
    engine.decode_text = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)
    llm = LLMConfig(model="Qwen/Qwen2.5-32B-Instruct", simulated=True)
    backend = SimulatedChatBackend(lambda m, p: ("llm", 1, 1), llm.model, "simulated-test")
    config = ServeConfig(slm=SLMServeConfig(path="unused", system=""), engine=CONFIG, llm=llm,
                         tau=TauSource(value=0.0))  # fmt: skip
    upstream = Upstream(llm, timeout_s=5, concurrency=4, backend=backend)
    service = CascadeService(config, engine, tokenizer, upstream, 0.0, "test", engine.metrics)
    service.ready.set()  # the engine is warm already
    server = BackgroundServer(build_app(service, warm_up_on_start=False)).start()
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
    questions = [f"What is {i} + {i * 7}?" for i in range(32)]
    barrier = threading.Barrier(32)

    def ask(q):
        barrier.wait(10)
        r = client.chat.completions.create(
            model="corea-cascade", messages=[{"role": "user", "content": q}], max_tokens=12
        )
        return r.choices[0].message.content, r.model_extra["corea"]

    try:
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(ask, questions))
        metrics = urlopen_text(f"{server.base_url}/metrics")
    finally:
        server.stop()
        engine.decode_text = lambda ids: " ".join(map(str, ids))
    encode = lambda q: tokenizer(  # noqa: E731
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                      add_generation_prompt=True), add_special_tokens=False,
    )["input_ids"]  # fmt: skip
    want = [tokenizer.decode(w, skip_special_tokens=True)
            for w in reference(model, [encode(q) for q in questions], 12)]  # fmt: skip
    assert [a for a, _ in answers] == want  # each client got the answer to its own question
    assert len({a for a, _ in answers}) == 32
    assert all(meta["answered_by"] == "slm" for _, meta in answers)  # tau 0: never deferred
    assert max(meta["slm"]["batch_rows"] for _, meta in answers) > 1
    # The batch-size histogram: some decode segment ran more than one row.
    counts = dict(re.findall(r'corea_batch_rows_bucket\{le="([^"]+)"\} ([0-9.]+)', metrics))
    assert float(counts["+Inf"]) > float(counts["1.0"])


def test_lanes_share_the_requests_and_answer_as_one_engine(model, caplog):
    """Two lanes (`Lanes`) over disjoint rows: greedy answers still equal the offline
    sampler's, both lanes decode, the second lane compiles nothing of its own (it shares the
    first's kernels), and a cancelled request is counted once, by its lane."""
    config = dataclasses.replace(CONFIG, rows=8, row_buckets=(4, 8), lanes=2)
    odd = dataclasses.replace(config, rows=9, max_queue=9)
    assert [(c.rows, c.max_queue, c.lanes) for c in lane_configs(odd)] == [(5, 5, 1), (4, 4, 1)]
    lanes = make_engine(model, str, [EOS], config)
    assert isinstance(lanes, Lanes) and lanes.lanes[1].graph is lanes.lanes[0].graph
    lanes.lanes[0].warmup()
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        lanes.lanes[1].warmup()
    assert not [r for r in caplog.records if "Compiling" in r.getMessage()]
    batch = prompts(12, 21)
    queued = Generation(batch[0], MAX_NEW)
    lanes.submit(queued)  # not started: it waits in its lane's queue
    assert lanes.queue_depth == 1 and lanes.cancel(queued) == "queued"
    lanes.start()
    try:
        futures = [lanes.submit(Generation(p, 16)) for p in batch]
        got = [f.result(120) for f in futures]
    finally:
        lanes.stop()
    assert [list(g.token_ids) for g in got] == [w[:16] for w in reference(model, batch, 16)]
    assert all(e.segments > 0 for e in lanes.lanes)  # the requests were shared out
    assert lanes.abandoned == {"queued": 1} and lanes.compiles_after_warmup == 0
    with pytest.raises(CoreaError, match="lanes=9: more lanes than rows"):
        dataclasses.replace(config, lanes=9)


def urlopen_text(url):
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()

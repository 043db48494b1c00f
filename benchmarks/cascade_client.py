"""LLM client throughput against the loopback server (issue 8 target: within 20% of ideal at 64).

    python benchmarks/cascade_client.py [--requests 1000] [--latency 0.2] [--concurrency 16 64]
                                        [--server process|thread] [--no-cache]

The simulated LLM answers every request after `--latency` seconds. With `c` requests in flight
the ideal wall time is `requests x latency / c`; the client's overhead (the `openai` SDK, JSON,
the thread pool, one SQLite commit per answer) is what the measured time adds. Each concurrency
gets a fresh server, so no connection is reused across runs, and a fresh response cache (the
cascade always writes one), unless `--no-cache`. By default the server runs in its own process,
as a remote LLM would, so its threads do not share this process's interpreter lock.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

from corea_jax.cascade import (
    ClientConfig,
    LLMClient,
    LLMEndpoint,
    LLMRequest,
    ResponseCache,
)
from corea_jax.testing import SimulatedLLMServer

MODEL = "simulated-llm"


def echo_policy(messages, params):
    """A fixed-size answer: the work here is the transport, not the text."""
    return f"<answer>{len(messages[-1]['content'])}</answer><confidence>0.9</confidence>", 40, 12


def _serve(latency_s: float, ports, stop) -> None:
    with SimulatedLLMServer(echo_policy, model=MODEL, latency_s=latency_s) as server:
        ports.put(server.port)
        stop.wait()


class ServerProcess:
    """The simulated LLM in a child process (spawned, so it starts clean)."""

    def __init__(self, latency_s: float):
        ctx = multiprocessing.get_context("spawn")
        self._ports, self._stop = ctx.Queue(), ctx.Event()
        self._proc = ctx.Process(target=_serve, args=(latency_s, self._ports, self._stop))

    def __enter__(self) -> str:
        self._proc.start()
        return f"http://127.0.0.1:{self._ports.get(timeout=120)}/v1"

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._proc.join(timeout=10)


class ServerThread:
    def __init__(self, latency_s: float):
        self._server = SimulatedLLMServer(echo_policy, model=MODEL, latency_s=latency_s)

    def __enter__(self) -> str:
        return self._server.start().base_url

    def __exit__(self, *exc) -> None:
        self._server.stop()


def measure(url: str, n: int, concurrency: int, cache_dir: Path | None) -> float:
    requests = [LLMRequest.from_prompt(f"q{i}", f"benchmark question {i}") for i in range(n)]
    cache = ResponseCache(cache_dir / f"c{concurrency}.sqlite") if cache_dir else None
    options = ClientConfig(concurrency=concurrency, timeout_s=30.0)
    client = LLMClient(LLMEndpoint(url, MODEL, api_key_env=None), options=options, cache=cache)
    start = time.perf_counter()
    answers = client.complete(requests)
    wall = time.perf_counter() - start
    client.close()
    if cache is not None:
        cache.close()
    if len(answers) != n or not all(a.ok and not a.cached for a in answers):
        raise SystemExit("benchmark: some requests were not answered by the server")
    return wall


def run(args: argparse.Namespace) -> int:
    server_cls = ServerProcess if args.server == "process" else ServerThread
    print(
        f"{args.requests} requests, {args.latency * 1000:.0f} ms latency, server in a "
        f"{args.server}, cache {'off' if args.no_cache else 'on'}"
    )
    verdict = 0
    with tempfile.TemporaryDirectory() as tmp:
        for concurrency in args.concurrency:
            with server_cls(args.latency) as url:
                wall = measure(
                    url, args.requests, concurrency, None if args.no_cache else Path(tmp)
                )
            ideal = args.requests * args.latency / concurrency
            over = wall / ideal - 1
            line = f"concurrency {concurrency:4d}: wall {wall:7.3f} s, ideal {ideal:7.3f} s"
            print(f"{line}, {100 * over:+.1f}% over ideal")
            if concurrency == 64 and over > 0.20:
                verdict = 1
    if 64 in args.concurrency:
        print("target (within 20% of ideal at concurrency 64):", "FAIL" if verdict else "met")
    return verdict


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--server", choices=("process", "thread"), default="process")
    parser.add_argument("--no-cache", action="store_true")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

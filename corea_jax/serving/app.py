"""The HTTP side: a Starlette app served by uvicorn.

    POST /v1/chat/completions   the cascade (`service.CascadeService`); `stream=true` answers
                                server-sent events once the SLM/LLM decision is made
    GET  /v1/models             the one served model
    GET  /health                200 {"status": "ok"} once warm; 503 while warming up
    GET  /metrics               Prometheus text format

A client that goes away before its answer (it disconnects, or its own timeout closes the
connection) abandons its request: the handler sees the disconnect while the cascade runs and
cancels it, which stops the work (`service`); so does `server.request_timeout_s`, answered 504.

Start-up: the server listens at once and warms the SLM up on a thread (every compiled shape),
so `/health` answers 503 "warming_up" until the engine is ready. Shutdown (SIGTERM or SIGINT):
uvicorn stops accepting connections and waits for the requests in flight (at most
`drain_timeout_s`), then the engine drains and the process exits. Errors are OpenAI's layout
(`protocol.APIError`); an unexpected exception is a 500 whose body names only its type, and is
logged, scrubbed of the upstream key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from corea_jax.serving import protocol
from corea_jax.serving.protocol import APIError
from corea_jax.serving.service import CascadeService

log = logging.getLogger("corea_jax.serving")


def error_response(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def build_app(service: CascadeService, *, warm_up_on_start: bool = True) -> Starlette:
    limits = service.config.server.limits(service.config.engine.max_new_tokens)

    async def chat(request: Request):
        start = time.monotonic()
        try:
            parsed = protocol.parse_chat_request(await request.body(), limits)
            body = await _unless_abandoned(
                request, service.complete(parsed), service.config.server.request_timeout_s
            )
        except ClientGone:
            service.metrics.answered("abandoned", False, time.monotonic() - start)
            return Response(status_code=499)  # nobody reads it (nginx's "client closed")
        except APIError as exc:
            if exc.status != 502:  # the upstream's are counted by the service
                service.metrics.answered(f"error_{exc.status}", False, time.monotonic() - start)
            return error_response(exc)
        except Exception as exc:
            log.error("request failed: %s", service.upstream.scrub(repr(exc)))
            service.metrics.answered("error_500", False, time.monotonic() - start)
            return error_response(
                APIError(500, f"internal error ({type(exc).__name__})", kind="server_error")
            )
        if not parsed.stream:
            return JSONResponse(body)
        chunks = protocol.stream_chunks(body, parsed.include_usage)

        async def events():
            for chunk in chunks:
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(request: Request):
        del request
        return JSONResponse({"object": "list", "data": [{
            "id": service.config.slm.served_name, "object": "model", "created": 0,
            "owned_by": "corea-jax",
        }]})  # fmt: skip

    async def health(request: Request):
        del request
        if service.warmup_error:
            return JSONResponse({"status": "failed", "error": service.warmup_error}, 500)
        if not service.ready.is_set():
            return JSONResponse({"status": "warming_up"}, 503, headers={"Retry-After": "5"})
        return JSONResponse({
            "status": "ok", "model": service.config.slm.served_name, "tau": service.tau,
            "tau_source": service.tau_source, "upstream": service.upstream.describe(),
            "upstream_simulated": service.upstream.simulated,
        })  # fmt: skip

    async def metrics(request: Request):
        del request
        return Response(service.metrics.text(), media_type="text/plain; version=0.0.4")

    async def http_error(request: Request, exc: HTTPException):
        del request
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(APIError(exc.status_code, str(exc.detail), kind=kind))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        del app
        if warm_up_on_start:
            threading.Thread(target=_warm, args=(service,), name="warmup", daemon=True).start()
        try:
            yield
        finally:
            await asyncio.to_thread(service.stop, True)

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error},
                     lifespan=lifespan)  # fmt: skip


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def _unless_abandoned(request: Request, work, timeout_s: float):
    """Awaits the coroutine `work` unless the client disconnects first (-> `ClientGone`) or
    `timeout_s` (> 0) passes (-> a 504 `APIError`); either way `work` is cancelled and has
    stopped before this returns."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait(
            {task, gone}, timeout=timeout_s or None, return_when=asyncio.FIRST_COMPLETED
        )
    except asyncio.CancelledError:  # the server itself is stopping this handler
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)  # its cancellation handlers ran
    if gone in done:
        raise ClientGone
    raise APIError(504, f"no answer within this server's request timeout of {timeout_s:g} s",
                   kind="server_error", code="request_timeout")  # fmt: skip


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the request body was read already, so the next ASGI
    message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _warm(service: CascadeService) -> None:
    t0 = time.monotonic()
    try:
        service.warm_up()
    except Exception:
        log.exception("SLM warm-up failed")
        return
    log.info("SLM warm: every shape compiled in %.1f s; ready", time.monotonic() - t0)


def uvicorn_config(app, host: str, port: int, *, drain_timeout_s: float, log_level: str):
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False,
        timeout_graceful_shutdown=drain_timeout_s, backlog=2048, lifespan="on",
    )  # fmt: skip


class DrainingServer(uvicorn.Server):
    """uvicorn's server, exiting with status 0 after a SIGTERM/SIGINT drain (uvicorn re-raises
    the signal once shut down, so the process would report death by signal). A second SIGINT
    still forces the exit."""

    def handle_exit(self, sig, frame) -> None:
        del frame
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
            return
        if not self.should_exit:
            log.warning(
                "%s: draining the requests in flight, then exiting", signal.Signals(sig).name
            )
        self.should_exit = True


class BackgroundServer:
    """uvicorn on a thread (tests, benchmarks): `with BackgroundServer(app) as s: s.base_url`.

    Signals stay with the main thread; `stop()` is uvicorn's graceful shutdown.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, drain_timeout_s=30.0):
        config = uvicorn_config(app, host, port, drain_timeout_s=drain_timeout_s,
                                log_level="warning")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # older uvicorn
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def wait_ready(self, timeout_s: float = 600.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._service_ready():
                return
            time.sleep(0.05)
        raise RuntimeError("the SLM did not become ready")

    def _service_ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(60)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

"""`corea-jax serve`: the trained cascade as one OpenAI-compatible endpoint.

- `kernels`: the jitted prefill-into-slot, decode-segment and cache-shift kernels.
- `engine`: `Engine`, continuous batching of `Generation`s on one thread (`EngineConfig`).
- `lanes`: `Lanes`, several engines over disjoint rows (a CPU's cores), `make_engine`.
- `protocol`: OpenAI request validation, response and stream bodies, `APIError`.
- `upstream`: `Upstream`, deferred requests through the project's `LLMClient`.
- `service`: `CascadeService`, SLM -> confidence -> tau -> LLM, cost and metadata.
- `metrics`: `ServerMetrics`, Prometheus.
- `settings`: `ServeConfig` and its sections, tau from a cascade `summary.json`.
- `app`: the Starlette app, uvicorn settings, `BackgroundServer`.
- `build`: `build_service`, from a `ServeConfig`.
"""

from corea_jax.serving.app import BackgroundServer, build_app
from corea_jax.serving.build import build_service
from corea_jax.serving.engine import Completion, Engine, EngineConfig, Generation
from corea_jax.serving.lanes import Lanes, make_engine
from corea_jax.serving.metrics import ServerMetrics
from corea_jax.serving.protocol import APIError, ChatRequest, Limits, parse_chat_request
from corea_jax.serving.service import CascadeService
from corea_jax.serving.settings import ServeConfig, read_tau
from corea_jax.serving.upstream import Upstream, UpstreamError

__all__ = [
    "APIError",
    "BackgroundServer",
    "CascadeService",
    "ChatRequest",
    "Completion",
    "Engine",
    "EngineConfig",
    "Generation",
    "Lanes",
    "Limits",
    "ServeConfig",
    "ServerMetrics",
    "Upstream",
    "UpstreamError",
    "build_app",
    "build_service",
    "make_engine",
    "parse_chat_request",
    "read_tau",
]

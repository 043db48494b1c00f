"""The SLM -> LLM cascade: pure deferral, cost and sweep logic around a small LLM client.

- `client`: `LLMClient` answers `LLMRequest`s through a `ChatBackend` (`backend`; the default
  speaks to any OpenAI-compatible endpoint and is the only code here that talks to the network),
  with the cache, retries, bounded concurrency and a failure budget; `endpoint` holds its
  settings (`LLMEndpoint`, `SamplingParams`, `RetryPolicy`, `ClientOptions`).
- `cache`: `ResponseCache`, the SQLite file that makes re-runs and sweeps free.
- `server`: `SimulatedLLMServer`, a loopback OpenAI-compatible server with fault injection
  (tests, benchmark, the offline demo's clearly labelled simulated LLM).
- `cost`: `PriceTable` of `corea_jax.scoring.metrics.Price`, tokens x price per 1M tokens.
- `sweep`: `CascadeData`, deferral, the threshold sweep, baselines, tau rules, AvgProb.
- `report`: the Markdown table and the PNG plots.
"""

from corea_jax.cascade.backend import (
    ChatBackend,
    ChatReply,
    OpenAIChatBackend,
    PermanentError,
    TransientError,
    parse_chat_completion,
)
from corea_jax.cascade.cache import CacheCorruptedError, ResponseCache, cache_key, redact_url
from corea_jax.cascade.client import ClientStats, LLMClient, LLMRequest, LLMResponse
from corea_jax.cascade.cost import DEFAULT_PRICES, PriceTable, cascade_cost, token_cost
from corea_jax.cascade.endpoint import ClientOptions, LLMEndpoint, RetryPolicy, SamplingParams
from corea_jax.cascade.report import (
    plot_pass_vs_cost,
    plot_reliability,
    plot_vs_tau,
    summary_table,
    write_report,
)
from corea_jax.cascade.sweep import (
    DEFAULT_GRID,
    TAU_RULES,
    CascadeData,
    OperatingPoint,
    Sweep,
    TauChoice,
    calibration_mask,
    defer_mask,
    effective_confidence,
    evaluate_tau,
    mean_token_probability,
    report_on_test,
    select_tau,
    sweep_taus,
    sweep_thresholds,
    tau_at_llm_pass,
    tau_for_budget,
    tau_within_llm,
)
from corea_jax.testing.llm_server import (
    FAULT_KINDS,
    AnswerPolicy,
    FaultSpec,
    ServerStats,
    SimulatedLLMServer,
    serve_simulated_llm,
)

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_PRICES",
    "FAULT_KINDS",
    "TAU_RULES",
    "AnswerPolicy",
    "CacheCorruptedError",
    "CascadeData",
    "ChatBackend",
    "ChatReply",
    "ClientOptions",
    "ClientStats",
    "FaultSpec",
    "LLMClient",
    "LLMEndpoint",
    "LLMRequest",
    "LLMResponse",
    "OpenAIChatBackend",
    "OperatingPoint",
    "PermanentError",
    "PriceTable",
    "ResponseCache",
    "RetryPolicy",
    "SamplingParams",
    "ServerStats",
    "SimulatedLLMServer",
    "Sweep",
    "TauChoice",
    "TransientError",
    "cache_key",
    "calibration_mask",
    "cascade_cost",
    "defer_mask",
    "effective_confidence",
    "evaluate_tau",
    "mean_token_probability",
    "parse_chat_completion",
    "plot_pass_vs_cost",
    "plot_reliability",
    "plot_vs_tau",
    "redact_url",
    "report_on_test",
    "select_tau",
    "serve_simulated_llm",
    "summary_table",
    "token_cost",
    "sweep_taus",
    "sweep_thresholds",
    "tau_at_llm_pass",
    "tau_for_budget",
    "tau_within_llm",
    "write_report",
]

"""The SLM -> LLM cascade: pure deferral, cost and sweep logic around a small LLM client.

- `settings`: `CascadeConfig` (one frozen section per part of an eval config), built once from
  the ConfigDict at the entry point.
- `pipeline`: `run` (the cascade: compute, then `report.write_cascade`) and `evaluate` (the SLM
  alone).
- `summary`: step 4, the results from the question rows (pure): per group and signal, tau by
  each rule, sweep, baselines, intervals, calibration.
- `slm_answers` / `llm_answers`: each model answers every question once, cached
  (`slm.samples` answers per question with matched decoding).
- `signals`: the fitted signals, a hidden-state probe and a pre-generation router
  (`corea_jax.probes`), fitted on the calibration split.
- `compare`: `corea-jax compare`, the paper's table of systems (SLM x signal) from one command.
- `fixed`: the cascade at a fixed tau (the LLM asked only for deferred questions).
- `intervals`: bootstrap intervals of a chosen tau's operating point.
- `client`: `LLMClient` answers `LLMRequest`s through a `ChatBackend` (`backend`; the default
  speaks to any OpenAI-compatible endpoint and is the only code here that talks to the network),
  with the cache, retries, bounded concurrency and a failure budget (`TokenCounter`: how an
  answer's tokens are counted when not by the server); `endpoint` holds its
  settings (`LLMEndpoint`, `SamplingParams`, `RetryPolicy`, `ClientConfig`).
- `cache`: `ResponseCache`, the SQLite file that makes re-runs and sweeps free.
- `cost`: `Price` and `PriceTable`, tokens x price per 1M tokens.
- `sweep`: `CascadeData`, deferral, the threshold sweep, baselines, tau rules, AvgProb (and a
  router's cost: only the prefill on a question it routes away).
- `report`: the Markdown table, the PNG plots and the run's output files.

The simulated LLM (in-process backend and loopback server with fault injection) lives in
`corea_jax.testing`.
"""

from corea_jax.cascade.backend import (
    ChatBackend,
    ChatReply,
    OpenAIChatBackend,
    PermanentError,
    TransientError,
)
from corea_jax.cascade.cache import CacheCorruptedError, ResponseCache
from corea_jax.cascade.client import (
    CallCancelled,
    LLMClient,
    LLMRequest,
    LLMResponse,
    TokenCounter,
)
from corea_jax.cascade.cost import DEFAULT_PRICES, Price, PriceTable
from corea_jax.cascade.endpoint import ClientConfig, LLMEndpoint, RetryPolicy, SamplingParams
from corea_jax.cascade.pipeline import evaluate, run
from corea_jax.cascade.report import summary_table, write_report
from corea_jax.cascade.settings import CascadeConfig, LLMConfig, TauConfig
from corea_jax.cascade.slm_answers import QuestionSource, SLMConfig
from corea_jax.cascade.sweep import (
    CascadeData,
    OperatingPoint,
    Sweep,
    TauChoice,
    calibration_mask,
    mean_token_probability,
    report_on_test,
    select_tau,
    sweep_thresholds,
)

__all__ = [
    "CallCancelled",
    "DEFAULT_PRICES",
    "CacheCorruptedError",
    "CascadeConfig",
    "CascadeData",
    "ChatBackend",
    "ChatReply",
    "ClientConfig",
    "LLMClient",
    "LLMConfig",
    "LLMEndpoint",
    "LLMRequest",
    "LLMResponse",
    "OpenAIChatBackend",
    "OperatingPoint",
    "PermanentError",
    "Price",
    "PriceTable",
    "QuestionSource",
    "ResponseCache",
    "RetryPolicy",
    "SLMConfig",
    "SamplingParams",
    "Sweep",
    "TauChoice",
    "TauConfig",
    "TokenCounter",
    "TransientError",
    "calibration_mask",
    "evaluate",
    "mean_token_probability",
    "report_on_test",
    "run",
    "select_tau",
    "summary_table",
    "sweep_thresholds",
    "write_report",
]

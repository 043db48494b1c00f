"""Test doubles of the LLM: clearly labelled SIMULATED, never a measurement of any model.

- `simulated_llm`: `gold_answer_policy` (right at a set rate, by a hash of the question; its
  replies the synthetic task's reference traces, `trace_reply`, or a short `stub_reply`) and
  `SimulatedChatBackend`, an in-process `ChatBackend` (the cascade's `llm.simulated=True`).
- `llm_server`: `SimulatedLLMServer`, a loopback OpenAI-compatible server with fault injection
  (`FaultSpec`), for the tests and benchmark that exercise HTTP faults.
"""

from corea_jax.testing.llm_server import (
    FAULT_KINDS,
    AnswerPolicy,
    FaultSpec,
    ServerStats,
    SimulatedLLMServer,
    serve_simulated_llm,
)
from corea_jax.testing.simulated_llm import (
    SIMULATED_REPLIES,
    SimulatedChatBackend,
    gold_answer_policy,
    simulated_identity,
    stub_reply,
    trace_reply,
    wrong_answer,
)

__all__ = [
    "FAULT_KINDS",
    "AnswerPolicy",
    "FaultSpec",
    "SIMULATED_REPLIES",
    "ServerStats",
    "SimulatedChatBackend",
    "SimulatedLLMServer",
    "gold_answer_policy",
    "serve_simulated_llm",
    "simulated_identity",
    "stub_reply",
    "trace_reply",
    "wrong_answer",
]

"""Test doubles of the LLM: clearly labelled SIMULATED, never a measurement of any model.

- `simulated_llm`: `gold_answer_policy` (right at a set rate, by a hash of the question) and
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
    SimulatedChatBackend,
    gold_answer_policy,
    simulated_identity,
    wrong_answer,
)

__all__ = [
    "FAULT_KINDS",
    "AnswerPolicy",
    "FaultSpec",
    "ServerStats",
    "SimulatedChatBackend",
    "SimulatedLLMServer",
    "gold_answer_policy",
    "serve_simulated_llm",
    "simulated_identity",
    "wrong_answer",
]

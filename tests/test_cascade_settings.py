"""The cascade's settings, scoring and in-process simulated LLM, without a model.

- Every eval config section is its dataclass's fields; a misspelt key is one line naming it.
- The cascade and `evaluate --completions` score the same completions identically, multiple
  choice included (the one scoring path).
- The in-process simulated LLM answers exactly as the loopback server does for the same policy,
  under a cache identity that is not a URL.
"""

import dataclasses
import json
from pathlib import Path

import pytest

from corea_jax.cascade import CascadeConfig, LLMClient, LLMEndpoint, LLMRequest, ResponseCache
from corea_jax.cascade.endpoint import ClientConfig, RetryPolicy, SamplingParams
from corea_jax.cascade.pipeline import score_answers
from corea_jax.cascade.settings import (
    GraderConfig,
    LLMConfig,
    ReportConfig,
    SignalsConfig,
    TauConfig,
)
from corea_jax.cascade.slm_answers import QuestionSource, SLMConfig
from corea_jax.cli import evaluate as evaluate_cli
from corea_jax.cli.config import load_config
from corea_jax.data import Record
from corea_jax.errors import CoreaError
from corea_jax.scoring.grading import GradingConfig
from corea_jax.scoring.grading_workers import Grader
from corea_jax.testing import (
    SimulatedChatBackend,
    SimulatedLLMServer,
    gold_answer_policy,
    simulated_identity,
)

REPO = Path(__file__).resolve().parents[1]


def test_every_eval_config_becomes_a_cascade_config():
    for name in ("eval_deepmath500", "eval_ood_math", "eval_ood_nonmath"):
        for arg in ("", ":smoke"):
            cfg = CascadeConfig.from_config(load_config(f"{REPO}/configs/{name}.py{arg}"))
            assert cfg.datasets and all(isinstance(d, QuestionSource) for d in cfg.datasets)
    demo = load_config(f"{REPO}/configs/demo.py")
    cfg = CascadeConfig.from_config(demo.cascade)
    assert cfg.llm.simulated and cfg.llm.simulated_difficulty_decay == 0.025
    assert cfg.slm.temperature == demo.rl.rollout.temperature  # decoding matched to training


def test_section_keys_are_the_dataclass_fields():
    config = load_config(f"{REPO}/configs/eval_deepmath500.py")
    sections = {"slm": SLMConfig, "llm": LLMConfig, "tau": TauConfig, "report": ReportConfig,
                "grading": GraderConfig, "signals": SignalsConfig}  # fmt: skip
    for name, cls in sections.items():
        assert set(config[name]) <= {f.name for f in dataclasses.fields(cls)}, name


def test_llm_client_defaults_have_one_home():
    llm = LLMConfig()
    assert llm.client() == ClientConfig()
    assert llm.sampling() == SamplingParams()
    assert llm.max_attempts == RetryPolicy().max_attempts
    assert GraderConfig().time_limit_s == GradingConfig().time_limit_s


@pytest.mark.parametrize(
    "override, message",
    [
        ({"llm": {"concurency": 4}}, "llm.concurency"),
        ({"datasets": {"x": {"reader": "synthetic", "limt": 3}}}, "datasets.x.limt"),
        ({"slm": {"scratch": {"enabld": True}}}, "slm.scratch.enabld"),
        ({"tau": {"rules": ("llm_pass", "cheapest")}}, "tau.rules: unknown rule 'cheapest'"),
        ({"colour": 1}, "config.colour"),
    ],
)
def test_a_misspelt_key_is_one_line_naming_it(override, message):
    base = {"datasets": {"synthetic": {"reader": "synthetic"}}}
    with pytest.raises(CoreaError, match=message.replace(".", r"\.").replace("(", r"\(")):
        CascadeConfig.from_config(base | override)


CHOICE = Record("q1", "Which colour is the sky?", "B", "choice", ("red", "blue", "green"))
MATH = Record("q2", "What is 2 + 2?", "4", "math")


@pytest.mark.parametrize(
    "record, text, correct",
    [
        (CHOICE, "<think>x</think><answer>(B) blue</answer><confidence>0.8</confidence>", True),
        (CHOICE, "<think>x</think><answer>B</answer><confidence>0.8</confidence>", True),
        (CHOICE, "<think>x</think><answer>blue</answer><confidence>0.3</confidence>", True),
        (CHOICE, "<think>x</think><answer>(A) red</answer><confidence>0.9</confidence>", False),
        (CHOICE, "<answer>B</answer>", True),
        (MATH, "<think>x</think><answer>4</answer><confidence>1.5</confidence>", True),
        (MATH, "<think>x</think><answer>5</answer><confidence>0.2</confidence>", False),
    ],
)
def test_cascade_and_evaluate_score_the_same_completion_alike(record, text, correct):
    row = {"id": record.id, "gold": record.answer, "completion": text, "kind": record.kind,
           "choices": list(record.choices) or None}  # fmt: skip
    (checked,) = [evaluate_cli._check_row(json.dumps(row), "row")]
    with Grader(workers=0) as grader:
        (cascade,) = score_answers([record], [text], "tags", grader)
        (evaluated,) = evaluate_cli.score_rows([checked], "tags", grader)
    assert cascade["correct"] is correct
    for key in ("answer", "confidence", "format_ok", "format_reason", "correct", "grade_method"):
        assert cascade[key] == evaluated[key], key


def _policy():
    answers = {f"question {i}": (str(i), "math", 0) for i in range(12)}
    return gold_answer_policy(answers, accuracy=0.5, seed=3)


def _requests():
    return [LLMRequest.from_prompt(f"q{i}", f"question {i}", system="sys") for i in range(12)]


def test_in_process_simulated_llm_answers_as_the_loopback_server(tmp_path):
    identity = simulated_identity(0.5, 3)
    backend = SimulatedChatBackend(_policy(), "sim-32b", identity)
    with LLMClient(None, backend=backend, cache=ResponseCache(tmp_path / "a.sqlite")) as client:
        in_process = client.complete(_requests())
    with SimulatedLLMServer(_policy(), model="sim-32b") as server:
        endpoint = LLMEndpoint(server.base_url, "sim-32b", api_key_env=None)
        with LLMClient(endpoint) as client:
            served = client.complete(_requests())
    fields = ("text", "prompt_tokens", "completion_tokens", "usage_source", "finish_reason")
    assert [[getattr(a, f) for f in fields] for a in in_process] == [
        [getattr(a, f) for f in fields] for a in served
    ]
    assert backend.requests == 12 and {a.usage_source for a in in_process} == {"api"}
    assert {a.text.count("<answer>") for a in in_process} == {1}


def test_simulated_identity_keys_the_cache_and_changes_with_the_answers(tmp_path):
    path = tmp_path / "llm.sqlite"
    backend = SimulatedChatBackend(_policy(), "sim-32b", simulated_identity(0.5, 3))
    with LLMClient(None, backend=backend, cache=ResponseCache(path)) as client:
        client.complete(_requests())
        assert client.source.startswith("simulated-llm:") and "://" not in client.source
    again = SimulatedChatBackend(_policy(), "sim-32b", simulated_identity(0.5, 3))
    with LLMClient(None, backend=again, cache=ResponseCache(path)) as client:
        client.complete(_requests())
        assert client.stats.cache_hits == 12 and again.requests == 0
    assert simulated_identity(0.5, 3) != simulated_identity(0.6, 3)
    assert simulated_identity(0.5, 3) != simulated_identity(0.5, 4)
    assert simulated_identity(0.5, 3, {"1,1": 0.9}) != simulated_identity(0.5, 3, {"1,1": 0.8})

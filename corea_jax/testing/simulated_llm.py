"""A SIMULATED large model for offline runs: it knows the gold answers and is right at a set rate.

`gold_answer_policy` is an `AnswerPolicy`. With `llm.simulated=True` the cascade plugs it in
in-process as `SimulatedChatBackend`, a `ChatBackend` behind the same `LLMClient` (cache,
concurrency, usage) as a real endpoint, with no network; the tests that exercise HTTP faults
serve a policy through `SimulatedLLMServer` on loopback instead. Nothing a simulated LLM says
measures any model: reports label such runs "SIMULATED LLM" everywhere, and the response cache
keys its answers on `simulated_identity(...)` (accuracy, levels, seed), never on a URL.

Policy: the question is looked up by the content of the request's last (user) message. With
probability `accuracy` (a hash of seed and question, so a re-run gives the same answers) the
reply carries the gold answer, otherwise a wrong one (a number + 1, the next letter of a multiple
choice, or the text "none"). The reply is in the project's output format
`<think>simulated</think><answer>X</answer><confidence>0.9</confidence>`; usage is
characters / 4 for the prompt and the reply [open].

Accuracy per question (`question_accuracy`), first that applies: on a synthetic-task question
with `difficulty_decay` > 0, `ceiling * exp(-decay * digit_operations(problem))`, so the LLM
errs on the questions that take more digit work (more columns, carries, borrows, partial
products), as a model would, not by a coin per level; else `accuracy_by_level["STEPS,DIGITS"]`;
else the global `accuracy`. Since the probability is known, a report can give the cascade's
*expected* accuracy beside the sampled one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Mapping

from corea_jax.cascade.backend import ChatReply
from corea_jax.testing.llm_server import AnswerPolicy

_INT = re.compile(r"-?\d+")


def wrong_answer(gold: str, kind: str, n_choices: int = 0) -> str:
    """An answer to `gold` that is surely wrong."""
    if kind == "choice" and len(gold) == 1 and gold.isalpha():
        n = max(n_choices, 2)
        return chr(ord("A") + (ord(gold.upper()) - ord("A") + 1) % n)
    if _INT.fullmatch(gold.strip()):
        return str(int(gold.strip()) + 1)
    return "none"


def digit_operations(problem) -> int:
    """The digit-level work of a synthetic problem (`corea_jax.data.synthetic.Problem`): for
    each + or -, one per column plus one per carry or borrow; for each x, two per pair of digits
    (a partial product and its addition). 1 for `3+4`, 19 or so for three 3-digit steps."""
    from corea_jax.data.synthetic import _apply

    value, work = problem.start, 0
    for op, x in problem.ops:
        a, b = abs(value), abs(x)
        if op == "*":
            work += 2 * len(str(a)) * len(str(b))
        else:
            carry = 0
            while a or b:
                column = a % 10 + b % 10 + carry if op == "+" else a % 10 - b % 10 - carry
                carry = int(column >= 10 if op == "+" else column < 0)
                work += 1 + carry
                a, b = a // 10, b // 10
        value = _apply(value, op, x)
    return work


def question_accuracy(
    record,
    accuracy: float,
    accuracy_by_level: Mapping[str, float] | None = None,
    difficulty_decay: float = 0.0,
    difficulty_ceiling: float = 0.99,
) -> float:
    """The probability that the simulated LLM answers `record` right (module docstring)."""
    meta = record.metadata
    if difficulty_decay > 0 and "ops" in meta:
        from corea_jax.data.synthetic import problem_of

        work = digit_operations(problem_of(record))
        return float(difficulty_ceiling * math.exp(-difficulty_decay * work))
    level = f"{meta.get('steps')},{meta.get('digits')}"
    return float((accuracy_by_level or {}).get(level, accuracy))


def gold_answer_policy(
    answers: Mapping[str, tuple], accuracy: float, seed: int = 0
) -> AnswerPolicy:
    """`answers` maps a request's last message to (gold, kind, number of choices) or to
    (gold, kind, number of choices, accuracy): a per-question accuracy (e.g. by the synthetic
    task's difficulty level) overrides the global `accuracy`."""

    def policy(messages, params):
        del params
        question = str(messages[-1].get("content", ""))
        gold, kind, n_choices, *own = answers.get(question, ("", "math", 0))
        p_right = own[0] if own else accuracy
        digest = hashlib.sha256(f"{seed}|{question}".encode()).digest()
        right = int.from_bytes(digest[:8], "big") / 2**64 < p_right
        answer = gold if right else wrong_answer(gold, kind, n_choices)
        text = f"<think>simulated</think><answer>{answer}</answer><confidence>0.9</confidence>"
        prompt = sum(len(str(m.get("content", ""))) for m in messages)
        return text, math.ceil(prompt / 4), math.ceil(len(text) / 4)

    return policy


def simulated_identity(
    accuracy: float,
    seed: int = 0,
    accuracy_by_level: Mapping[str, float] | None = None,
    difficulty: tuple[float, float] = (0.0, 0.99),
) -> str:
    """The name a gold-answer simulated LLM answers under (the response cache's key in place of
    an endpoint URL): it changes whenever its answers can. `difficulty`: (decay, ceiling)."""
    levels = json.dumps(dict(accuracy_by_level or {}), sort_keys=True)
    if difficulty[0] > 0:
        levels += f"|difficulty{difficulty[0]:g},{difficulty[1]:g}"
    digest = hashlib.sha256(levels.encode()).hexdigest()[:8]
    return f"simulated-llm:acc{accuracy:g}-levels{digest}-seed{seed}"


class SimulatedChatBackend:
    """A `ChatBackend` answering in-process with an `AnswerPolicy`: no network, no faults.

    Its reply is what `SimulatedLLMServer` would send for the same policy (the policy's text and
    token counts as the usage, finish reason "stop"). `requests` counts the calls answered.
    """

    def __init__(self, policy: AnswerPolicy, model: str, identity: str):
        self.model, self.identity = model, identity
        self._policy = policy
        self._lock = threading.Lock()
        self.requests = 0

    def __repr__(self) -> str:
        return f"SimulatedChatBackend({self.identity!r}, model={self.model!r})"

    def chat(self, messages, params) -> ChatReply:
        params = {"model": self.model, **params}
        text, prompt, completion = self._policy([dict(m) for m in messages], params)
        with self._lock:
            self.requests += 1
        return ChatReply(text, int(prompt), int(completion), "stop")

    def close(self) -> None:
        pass

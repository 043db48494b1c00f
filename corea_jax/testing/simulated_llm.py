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
choice, or the text "none"). The reply, in the project's output format, is one of
`SIMULATED_REPLIES` (the cascade's `llm.simulated_reply`):

- "trace": a reasoning-length reply, as a real LLM writes one (PAPER.md, "A cost model that is
  fair to both sides"): for a synthetic-task question its reference trace, the SFT warm-up
  target (`synthetic.reference_completion`), stating confidence 0.90; a wrong reply is that
  trace with its final result and its answer replaced by the wrong answer (`trace_reply`).
  [open] fallback: a question with no reference trace (not synthetic) gets the stub below,
  so there the simulated LLM is billed for a few tokens, not for a chain of thought: its cost
  is a wiring check, not a figure.
- "stub": `<think>simulated</think><answer>X</answer><confidence>0.9</confidence>` (`stub_reply`),
  the replies of earlier versions, kept to reproduce them.

Usage: with a `TokenCounter` (the cascade gives the SLM's, `llm.usage="slm"`) the prompt and the
reply as it counts them; without one characters / 4 for the prompt and the reply [open] (the
loopback server of the HTTP tests, `corea-jax serve`'s demo upstream).

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
from collections.abc import Callable, Mapping

from corea_jax.cascade.backend import ChatReply
from corea_jax.testing.llm_server import AnswerPolicy

_INT = re.compile(r"-?\d+")
SIMULATED_REPLIES = ("trace", "stub")  # LLMConfig.simulated_reply
TRACE_CONFIDENCE = 0.9  # the trace replies' stated confidence, the warm-up traces' (unused)


def stub_reply(answer: str) -> str:
    """The short reply: no reasoning, `answer`, confidence 0.9."""
    return f"<think>simulated</think><answer>{answer}</answer><confidence>0.9</confidence>"


def trace_reply(record, answer: str, confidence: float = TRACE_CONFIDENCE) -> str:
    """The synthetic `record`'s reference trace (`synthetic.reference_completion`) ending in
    `answer`: the gold one as is; another one with the last step's result and the answer tag
    replaced (the chain goes wrong at its end, and is as long as the right one, give or take a
    digit)."""
    from corea_jax.data import synthetic

    right = synthetic.reference_completion(record, confidence)
    gold = str(synthetic.problem_of(record).answer)
    if answer == gold:
        return right
    think, _, rest = right.partition("</think>")
    head, sep, last = think.rpartition(f"= {gold}.")
    think = f"{head}= {answer}." if sep and not last else think
    return f"{think}</think>" + rest.replace(
        f"<answer>{gold}</answer>", f"<answer>{answer}</answer>"
    )


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
    answers: Mapping[str, tuple],
    accuracy: float,
    seed: int = 0,
    *,
    replies: Mapping[str, Callable[[str], str]] | None = None,
    counter=None,
) -> AnswerPolicy:
    """`answers` maps a request's last message to (gold, kind, number of choices) or to
    (gold, kind, number of choices, accuracy): a per-question accuracy (e.g. by the synthetic
    task's difficulty level) overrides the global `accuracy`.

    `replies` maps a last message to its reply writer (`answer -> text`, e.g. `trace_reply` of
    its record); a question without one gets `stub_reply`. `counter`: a
    `corea_jax.cascade.TokenCounter` for the usage reported (None: characters / 4)."""
    replies = replies or {}

    def policy(messages, params):
        del params
        question = str(messages[-1].get("content", ""))
        gold, kind, n_choices, *own = answers.get(question, ("", "math", 0))
        p_right = own[0] if own else accuracy
        digest = hashlib.sha256(f"{seed}|{question}".encode()).digest()
        right = int.from_bytes(digest[:8], "big") / 2**64 < p_right
        answer = gold if right else wrong_answer(gold, kind, n_choices)
        text = replies.get(question, stub_reply)(answer)
        if counter is not None:
            return text, counter.prompt(messages), counter.completion(text, "stop")
        prompt = sum(len(str(m.get("content", ""))) for m in messages)
        return text, math.ceil(prompt / 4), math.ceil(len(text) / 4)

    return policy


def simulated_identity(
    accuracy: float,
    seed: int = 0,
    accuracy_by_level: Mapping[str, float] | None = None,
    difficulty: tuple[float, float] = (0.0, 0.99),
    reply: str = "stub",
) -> str:
    """The name a gold-answer simulated LLM answers under (the response cache's key in place of
    an endpoint URL): it changes whenever its answers can. `difficulty`: (decay, ceiling);
    `reply`: one of `SIMULATED_REPLIES` (a "stub" name is that of earlier versions, so their
    caches stay valid for stub replies and are never read for trace replies)."""
    if reply not in SIMULATED_REPLIES:
        raise ValueError(f"simulated reply {reply!r}: choose from {SIMULATED_REPLIES}")
    levels = json.dumps(dict(accuracy_by_level or {}), sort_keys=True)
    if difficulty[0] > 0:
        levels += f"|difficulty{difficulty[0]:g},{difficulty[1]:g}"
    digest = hashlib.sha256(levels.encode()).hexdigest()[:8]
    name = f"simulated-llm:acc{accuracy:g}-levels{digest}-seed{seed}"
    return name if reply == "stub" else f"{name}-reply-{reply}-v1"


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

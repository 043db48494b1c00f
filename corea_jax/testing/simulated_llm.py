"""A SIMULATED large model for offline runs: it knows the gold answers and is right at a set rate.

`gold_answer_policy` is an `AnswerPolicy` for `SimulatedLLMServer`: the pipeline starts that
loopback server when `llm.simulated=True`, so the whole cascade (HTTP client, retries, cache,
usage) runs as against a real endpoint, but nothing a simulated LLM says measures any model.
Reports label such runs "SIMULATED LLM" everywhere.

Policy: the question is looked up by the content of the request's last (user) message. With
probability `accuracy` (a hash of seed and question, so a re-run gives the same answers) the
reply carries the gold answer, otherwise a wrong one (a number + 1, the next letter of a multiple
choice, or the text "none"). The reply is in the project's output format
`<think>simulated</think><answer>X</answer><confidence>0.9</confidence>`; usage is
characters / 4 for the prompt and the reply [open].
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping

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

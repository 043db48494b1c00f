"""The simulated LLM's accuracy model: digit work by hand, and answers right at the stated rate;
its replies (reference traces or stubs), the usage it reports and the identity naming them."""

import math

import numpy as np
import pytest

from corea_jax.cascade import TokenCounter
from corea_jax.cascade.llm_answers import simulated_backend
from corea_jax.cascade.settings import LLMConfig
from corea_jax.data import PromptTemplates, Record, synthetic
from corea_jax.scoring.parsing import parse_completion
from corea_jax.testing.simulated_llm import (
    digit_operations,
    gold_answer_policy,
    question_accuracy,
    simulated_identity,
    stub_reply,
    trace_reply,
)


def _problem(start, *ops, digits=2):
    return synthetic.Problem(start=start, ops=tuple(ops), digits=digits)


def test_digit_operations_by_hand():
    assert digit_operations(_problem(3, ("+", 4), digits=1)) == 1  # one column
    assert digit_operations(_problem(8, ("+", 5), digits=1)) == 2  # one column and its carry
    assert digit_operations(_problem(34, ("+", 57))) == 3  # 4+7 carries; 3+5+1
    assert digit_operations(_problem(52, ("-", 17))) == 3  # 2-7 borrows; 5-1-1
    assert digit_operations(_problem(12, ("*", 34))) == 8  # 2 x 2 digit pairs, 2 each
    # Steps add up, each on the running value: 34+57 = 91, then 91-17: 1-7 borrows, 9-1-1.
    assert digit_operations(_problem(34, ("+", 57), ("-", 17))) == 3 + 3


def test_accuracy_falls_with_digit_work_and_levels_still_work():
    records = synthetic.make_split(synthetic.SyntheticTask(), "test", 900)
    llm = LLMConfig(simulated=True, simulated_difficulty_decay=0.025)
    p = np.array([llm.simulated_accuracy_of(r) for r in records])
    work = np.array([digit_operations(synthetic.problem_of(r)) for r in records])
    assert np.allclose(p, 0.99 * np.exp(-0.025 * work))
    assert 0.8 < p.mean() < 0.9 and len(np.unique(p)) > 10  # per question, not per level
    by_level = LLMConfig(simulated=True, simulated_accuracy_by_level={"1,1": 0.5})
    easy = next(r for r in records if r.metadata["steps"] == 1 and r.metadata["digits"] == 1)
    hard = next(r for r in records if r.metadata["steps"] == 3)
    assert by_level.simulated_accuracy_of(easy) == 0.5
    assert by_level.simulated_accuracy_of(hard) == by_level.simulated_accuracy == 0.7
    assert question_accuracy(easy, 0.7) == 0.7


def test_policy_is_right_at_the_stated_rate_and_identity_names_the_model():
    answers = {f"q{i}": ("7", "numeric", 0, 0.3 if i % 2 else 0.9) for i in range(4000)}
    policy = gold_answer_policy(answers, accuracy=0.5, seed=1)
    right = np.array([("<answer>7</answer>" in policy([{"content": q}], {})[0]) for q in answers])
    assert right[1::2].mean() == pytest.approx(0.3, abs=0.03)
    assert right[0::2].mean() == pytest.approx(0.9, abs=0.03)
    plain = simulated_identity(0.7, 0, {})
    assert simulated_identity(0.7, 0, {}, (0.0, 0.99)) == plain  # caches made before stay valid
    assert simulated_identity(0.7, 0, {}, (0.025, 0.99)) != plain
    assert math.isclose(0.99 * math.exp(-0.025), 0.9655, abs_tol=1e-4)


RECORDS = synthetic.make_split(synthetic.SyntheticTask(), "test", 9)


def test_trace_reply_is_the_reference_trace_with_the_policys_answer():
    for r in RECORDS:
        right = trace_reply(r, r.answer)
        assert right == synthetic.reference_completion(r, 0.9)
        wrong_answer = str(int(r.answer) + 1)
        wrong = trace_reply(r, wrong_answer)
        assert parse_completion(wrong).answer == wrong_answer
        assert wrong.count(f"= {wrong_answer}.</think>") == 1  # the last step goes wrong
        assert wrong.replace(f"= {wrong_answer}.", f"= {r.answer}.").replace(
            f"<answer>{wrong_answer}<", f"<answer>{r.answer}<") == right  # fmt: skip


def test_policy_writes_the_given_replies_else_the_stub_and_counts_with_the_counter():
    answers = {"q1": ("7", "numeric", 0, 1.0), "q2": ("8", "numeric", 0, 1.0)}
    counter = TokenCounter(len, "slm_tokenizer", chat=lambda ms: 50, end_of_turn=1)
    policy = gold_answer_policy(answers, 0.5, replies={"q1": lambda a: f"long {a}"},
                                counter=counter)  # fmt: skip
    assert policy([{"role": "user", "content": "q1"}], {}) == ("long 7", 50, len("long 7") + 1)
    text, prompt, completion = policy([{"role": "user", "content": "q2"}], {})
    assert (text, prompt, completion) == (stub_reply("8"), 50, len(stub_reply("8")) + 1)
    legacy = gold_answer_policy(answers, 0.5)  # characters / 4, the stub
    assert legacy([{"content": "q2"}], {}) == (
        stub_reply("8"),
        1,
        math.ceil(len(stub_reply("8")) / 4),
    )


def test_the_reply_kind_is_in_the_identity_and_stub_names_stay_as_they_were():
    plain = simulated_identity(0.7, 0, {})
    assert simulated_identity(0.7, 0, {}, reply="stub") == plain
    assert simulated_identity(0.7, 0, {}, reply="trace") != plain
    with pytest.raises(ValueError, match="simulated reply 'long'"):
        simulated_identity(0.7, 0, {}, reply="long")


def test_cascade_simulated_llm_answers_synthetic_questions_with_traces_and_others_with_stubs():
    bench = Record("b1", "What is 2 + 2?", "4", "math")
    questions = {"synthetic": (RECORDS, synthetic.SYNTHETIC_PROMPTS),
                 "bench": ((bench,), PromptTemplates())}  # fmt: skip
    llm = LLMConfig(simulated=True, simulated_accuracy=1.0)
    backend = simulated_backend(llm, questions)
    assert backend.identity.endswith("-reply-trace-v1")
    for r in RECORDS:
        reply = backend.chat(synthetic.SYNTHETIC_PROMPTS.messages(r), {})
        assert reply.text == synthetic.reference_completion(r, 0.9)
    assert backend.chat(PromptTemplates().messages(bench), {}).text == stub_reply("4")
    stub = simulated_backend(LLMConfig(simulated=True, simulated_reply="stub"), questions)
    assert stub.identity == simulated_identity(0.7, 0, {})
    assert stub.chat(synthetic.SYNTHETIC_PROMPTS.messages(RECORDS[0]), {}).text.startswith(
        "<think>simulated</think>")  # fmt: skip

"""Both models of the cascade billed alike (PAPER.md, "A cost model that is fair to both sides").

- With equal prices, SLM only and LLM only cost the same per question when the SLM writes what
  the LLM writes: through the real pieces (the SLM's rows from `SLMAnswerer`, a stand-in
  sampler writing the reference traces; the simulated LLM through `answer_with_llm` and
  `LLMClient`; costs from `question_rows`). The legacy billing (instructions sent to the LLM
  only, stub replies, characters / 4) does not, so the check can fail.
- Each option (`llm.messages`, `llm.usage`, `llm.simulated_reply`, `ClientConfig.usage`) does
  what it says, and a bad value is one line naming the field.
- The summary's cost per question and the report's line about it, by hand.
"""

import numpy as np
import pytest

from corea_jax.cascade import (
    CascadeConfig,
    ClientConfig,
    LLMClient,
    LLMConfig,
    LLMRequest,
    ResponseCache,
    TokenCounter,
)
from corea_jax.cascade.backend import ChatReply
from corea_jax.cascade.llm_answers import answer_with_llm, llm_messages
from corea_jax.cascade.pipeline import question_rows, score_answers, scored_llm_rows
from corea_jax.cascade.report import cost_line
from corea_jax.cascade.slm_answers import QuestionSource, SLMAnswerer, SLMConfig, load_questions
from corea_jax.cascade.summary import cost_per_question
from corea_jax.data import DEFAULT_SYSTEM, PromptTemplates, Record, synthetic
from corea_jax.errors import CoreaError
from corea_jax.sampling.sampler import SampleBatch
from corea_jax.scoring.grading_workers import Grader

SYNTHETIC = QuestionSource("synthetic", "synthetic", split="test", limit=12)
EQUAL_PRICES = (("slm-x", 1.0, 1.0), ("llm-x", 1.0, 1.0))


@pytest.fixture(scope="module")
def slm_dir(tmp_path_factory):
    """A tokenizer-only SLM directory (the scratch model's byte-level BPE and ChatML template):
    the stand-in sampler needs no weights."""
    from corea_jax.models.scratch import train_tokenizer

    out = tmp_path_factory.mktemp("slm")
    records = synthetic.make_split(synthetic.SyntheticTask(), "train", 200)
    texts = [r.question for r in records] + [
        synthetic.reference_completion(r, 0.9) for r in records
    ]
    train_tokenizer(texts + [DEFAULT_SYSTEM], out, vocab_size=512)
    return out


class TraceSampler:
    """Writes each prompt's reference trace (stating 0.90, as the simulated LLM's trace replies
    do) and then EOS, as `Sampler.generate` lays its rows out."""

    def __init__(self, tokenizer, traces: dict):
        self.tokenizer, self.traces = tokenizer, traces

    def generate(self, prompts, *, max_new_tokens, n, method, seed):
        del max_new_tokens, method, seed
        eos = self.tokenizer.eos_token_id
        rows = [
            self.tokenizer(self.traces[tuple(p)], add_special_tokens=False)["input_ids"] + [eos]
            for p in prompts
            for _ in range(n)
        ]
        width = max(map(len, rows))
        tokens = np.zeros((len(rows), width), np.int32)
        for i, ids in enumerate(rows):
            tokens[i, : len(ids)] = ids
        zeros = np.zeros(tokens.shape, np.float32)
        return SampleBatch(
            tokens, np.array([len(r) for r in rows], np.int32), zeros, zeros,
            ["eos"] * len(rows), np.repeat(np.arange(len(prompts)), n),
        )  # fmt: skip


def _rows(cfg: CascadeConfig, slm_dir, tmp_path):
    """`question_rows` of the synthetic questions: the SLM writing the reference traces, the
    simulated LLM answering as `cfg.llm` says."""
    questions = load_questions(cfg.datasets)
    answerer = SLMAnswerer(slm_dir, cfg.slm, tmp_path / "slm")
    (records, templates), name = questions["synthetic"], "synthetic"
    prompts = answerer.prompt_ids(records, templates)
    traces = {
        tuple(p): synthetic.reference_completion(r, 0.9)
        for r, p in zip(records, prompts, strict=True)
    }
    answerer._sampler_obj = TraceSampler(answerer.tokenizer, traces)
    with Grader(workers=0) as grader:
        rows = answerer.answer(name, records, templates)
        grades = score_answers(records, [r["text"] for r in rows], "tags", grader)
        slm = {name: [row | g for row, g in zip(rows, grades, strict=True)]}
        answers, _ = answer_with_llm(
            cfg.llm, questions, tmp_path / "llm.sqlite", answerer.token_counter()
        )
        llm = {name: scored_llm_rows(cfg, records, answers[name], grader)}
    return question_rows(cfg, questions, slm, llm)


def test_equal_prices_and_equal_replies_cost_the_same_per_question(slm_dir, tmp_path):
    llm = LLMConfig(model="llm-x", simulated=True, simulated_accuracy=1.0)  # billing defaults
    cfg = CascadeConfig((SYNTHETIC,), slm=SLMConfig(price_name="slm-x"), llm=llm,
                        prices=EQUAL_PRICES)  # fmt: skip
    rows = _rows(cfg, slm_dir, tmp_path / "alike")
    assert len(rows) > 6
    for r in rows:
        assert r["llm_text"] == r["slm_text"]  # the same reply ...
        assert r["llm_usage_source"] == "slm_tokenizer"
        assert (r["llm_prompt_tokens"], r["llm_completion_tokens"]) == (
            r["slm_prompt_tokens"], r["slm_completion_tokens"])  # fmt: skip
        assert r["llm_cost"] == pytest.approx(r["slm_cost"])  # ... costs the same
    cost = cost_per_question(rows)
    assert cost["slm_vs_llm"] == pytest.approx(1.0)

    legacy = LLMConfig(model="llm-x", simulated=True, simulated_accuracy=1.0,
                       messages="system", usage="api", simulated_reply="stub")  # fmt: skip
    old = _rows(
        CascadeConfig((SYNTHETIC,), slm=SLMConfig(price_name="slm-x"), llm=legacy,
                      prices=EQUAL_PRICES),
        slm_dir, tmp_path / "legacy",
    )  # fmt: skip
    assert all(r["llm_prompt_tokens"] > r["slm_prompt_tokens"] for r in old)  # DEFAULT_SYSTEM
    assert all(r["llm_completion_tokens"] < r["slm_completion_tokens"] for r in old)  # stubs
    assert cost_per_question(old)["slm_vs_llm"] != pytest.approx(1.0)


def test_wrong_trace_replies_cost_about_what_right_ones_do(slm_dir, tmp_path):
    llm = LLMConfig(model="llm-x", simulated=True, simulated_accuracy=0.0)  # always wrong
    cfg = CascadeConfig((SYNTHETIC,), slm=SLMConfig(price_name="slm-x"), llm=llm,
                        prices=EQUAL_PRICES)  # fmt: skip
    rows = _rows(cfg, slm_dir, tmp_path)
    for r in rows:
        assert not r["llm_correct"] and r["slm_correct"]
        assert r["llm_prompt_tokens"] == r["slm_prompt_tokens"]
        assert abs(r["llm_completion_tokens"] - r["slm_completion_tokens"]) <= 2  # a digit or two


SYN = synthetic.make_split(synthetic.SyntheticTask(), "test", 1)[0]
BENCH = Record("b1", "What is 2 + 2?", "4", "math")


def test_llm_messages_are_the_slms_own_or_the_system_text():
    prompts = synthetic.SYNTHETIC_PROMPTS
    assert llm_messages(LLMConfig(), SYN, prompts) == ({"role": "user", "content": SYN.question},)
    assert llm_messages(LLMConfig(messages="system"), SYN, prompts) == (
        {"role": "system", "content": DEFAULT_SYSTEM},
        {"role": "user", "content": SYN.question},
    )
    own = LLMConfig(messages="system", system="be brief")
    assert llm_messages(own, SYN, prompts)[0]["content"] == "be brief"
    # On a benchmark the SLM's own messages are what the LLM was always sent (same cache keys).
    paper = PromptTemplates()
    assert llm_messages(LLMConfig(), BENCH, paper) == llm_messages(
        LLMConfig(messages="system"), BENCH, paper) == tuple(paper.messages(BENCH))  # fmt: skip


def test_usage_auto_counts_the_simulated_llm_with_the_slm_tokenizer_and_a_real_one_by_its_api():
    assert LLMConfig(simulated=True).billed_usage == "slm"
    assert LLMConfig(simulated=True).client().usage == "counted"
    assert LLMConfig().billed_usage == "api" and LLMConfig().client() == ClientConfig()
    assert LLMConfig(usage="slm").client().usage == "counted"
    assert LLMConfig(simulated=True, usage="api").client().usage == "api"


def test_usage_slm_needs_the_slms_token_counter(tmp_path):
    questions = {"synthetic": ((SYN,), synthetic.SYNTHETIC_PROMPTS)}
    with pytest.raises(CoreaError, match="llm.usage='slm'"):
        answer_with_llm(LLMConfig(simulated=True), questions, tmp_path / "c.sqlite", len)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"llm": {"messages": "llm"}}, "llm.messages='llm': choose from"),
        ({"llm": {"usage": "chars"}}, "llm.usage='chars': choose from"),
        ({"llm": {"simulated_reply": "long"}}, "llm.simulated_reply='long': choose from"),
        ({"llm": {"system": "be brief"}}, "llm.system is set but llm.messages='slm'"),
    ],
)
def test_a_bad_billing_option_is_one_line_naming_the_field(section, message):
    base = {"datasets": {"synthetic": {"reader": "synthetic"}}}
    with pytest.raises(CoreaError, match=message.replace(".", r"\.")) as info:
        CascadeConfig.from_config(base | section)
    assert "\n" not in str(info.value)
    with pytest.raises(CoreaError, match=r"ClientConfig\.usage='x'"):
        ClientConfig(usage="x")


CHAT = TokenCounter(len, "slm_tokenizer", chat=lambda ms: 100 + len(ms), end_of_turn=1)


def test_token_counter_counts_the_chat_template_and_the_end_of_turn_or_neither():
    messages = [{"role": "user", "content": "abc"}]
    assert CHAT.prompt(messages) == 101
    assert (CHAT.completion("abcd", "stop"), CHAT.completion("abcd", "length")) == (5, 4)
    plain = CHAT.contents()
    assert (plain.prompt(messages), plain.completion("abcd", "stop"), plain.source) == (
        3, 4, "tokenizer")  # fmt: skip


class ReportingBackend:
    """Replies "answer!" and reports its own usage (7, 3), as an endpoint does."""

    identity, model = "reporting-test", "m"

    def __init__(self):
        self.requests = 0

    def chat(self, messages, params):
        self.requests += 1
        return ChatReply("answer!", 7, 3, "stop")

    def close(self):
        pass


def test_counted_usage_replaces_the_servers_and_recounts_cached_answers(tmp_path):
    request = [LLMRequest.from_prompt("q", "abc")]
    cache = ResponseCache(tmp_path / "c.sqlite")
    with LLMClient(None, backend=ReportingBackend(), cache=cache) as client:
        (api,) = client.complete(request)
    assert (api.prompt_tokens, api.completion_tokens, api.usage_source) == (7, 3, "api")
    counted = ClientConfig(usage="counted")
    backend = ReportingBackend()
    with LLMClient(None, backend=backend, cache=cache, options=counted,
                   count_tokens=CHAT) as client:  # fmt: skip
        (again,) = client.complete(request)
    assert again.cached and backend.requests == 0
    assert (again.prompt_tokens, again.completion_tokens) == (101, len("answer!") + 1)
    assert again.usage_source == "slm_tokenizer"
    with LLMClient(None, backend=ReportingBackend(), options=counted,
                   count_tokens=CHAT) as client:  # fmt: skip
        (fresh,) = client.complete(request)
    assert (fresh.prompt_tokens, fresh.completion_tokens) == (101, 8)
    cache.close()


def test_cost_per_question_and_its_report_line_by_hand():
    rows = [
        {"slm_cost": 1.0, "llm_cost": 4.0, "slm_prompt_tokens": 10, "slm_completion_tokens": 30,
         "llm_prompt_tokens": 10, "llm_completion_tokens": 40, "llm_usage_source": "api"},
        {"slm_cost": 3.0, "llm_cost": 6.0, "slm_prompt_tokens": 20, "slm_completion_tokens": 50,
         "llm_prompt_tokens": 30, "llm_completion_tokens": 60, "llm_usage_source": "api"},
    ]  # fmt: skip
    cost = cost_per_question(rows)
    assert (cost["slm_only"], cost["llm_only"], cost["slm_vs_llm"]) == (2.0, 5.0, 0.4)
    assert cost["tokens"] == {"slm": {"prompt": 15.0, "completion": 40.0},
                              "llm": {"prompt": 20.0, "completion": 50.0}}  # fmt: skip
    assert cost["llm_usage_source"] == ["api"]
    assert cost_line("g", cost) == (
        "g, cost per question on the test split: SLM only USD 2 (15 prompt + 40 completion "
        "tokens), LLM only USD 5 (20 prompt + 50 completion tokens); SLM only / LLM only = 0.400."
    )
    assert cost_per_question([]) == {}
    free = cost_per_question([rows[0] | {"llm_cost": 0.0}])
    assert free["slm_vs_llm"] is None

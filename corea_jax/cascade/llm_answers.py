"""Step 2 of the cascade: the LLM answers every question once, through `LLMClient`.

Every question is asked, deferred or not: that makes every tau, baseline and rule a pure function
of the answers. Answers are cached in `DIR/llm_cache.sqlite` (`ResponseCache`), so a re-run
makes no call.

The LLM's prompt [open] (`llm_messages`, `LLMConfig.messages`): by default the SLM's own chat
messages (`PromptTemplates.messages`: on the benchmarks `DEFAULT_SYSTEM`, which asks for the
<think>/<answer>/<confidence> layout, and the question with its options; on the synthetic task
the bare question), so both models are billed for the same prompt; or the system text
`LLMConfig.system` (default `DEFAULT_SYSTEM`) and the SLM's user text. Token counts
(`LLMConfig.usage`): the endpoint's usage, or the SLM's tokenizer counting as for the SLM's own
rows (`SLMAnswerer.token_counter`; the default for the simulated LLM). A question the LLM
failed within `max_failed_questions` comes back with `error` set (it is not cached, so the
next run asks again).

Progress (`corea_jax.progress`): one bar over the distinct questions, advanced as each is
answered (from the cache or the network; the client calls back on this thread), showing the
cache hits, the failed questions and the faults retried so far. Accuracy is not shown: grading
is the pipeline's, after all answers are in.

With `LLMConfig.simulated` the LLM is `corea_jax.testing.simulated_llm.SimulatedChatBackend`
in-process (no network): it answers with the gold answer at the configured accuracy, in a
reply of `LLMConfig.simulated_reply` (the synthetic task's reference trace by default), and
says so on stderr and in every output.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from corea_jax.cascade.cache import ResponseCache
from corea_jax.cascade.client import LLMClient, LLMRequest, LLMResponse, TokenCounter
from corea_jax.cascade.settings import LLMConfig
from corea_jax.errors import CoreaError
from corea_jax.progress import progress


def llm_messages(llm: LLMConfig, record, templates) -> tuple[dict, ...]:
    """The LLM's chat for one question (`LLMConfig.messages`): "slm" the SLM's own messages
    (`templates.messages(record)`); "system" the system text (`llm.system`, "" =
    `DEFAULT_SYSTEM`) and the SLM's user text."""
    if llm.messages == "slm":
        return tuple(templates.messages(record))
    from corea_jax.data import DEFAULT_SYSTEM

    return (
        {"role": "system", "content": llm.system or DEFAULT_SYSTEM},
        {"role": "user", "content": templates.user_text(record)},
    )


def simulated_backend(llm: LLMConfig, questions: dict, counter: TokenCounter | None = None):
    """The SIMULATED LLM for `questions` (`{name: (records, templates)}`), as a `ChatBackend`.
    It finds a question by its request's last message; `counter` counts the usage it reports
    (None: characters / 4)."""
    from corea_jax.testing.simulated_llm import (
        SimulatedChatBackend,
        gold_answer_policy,
        simulated_identity,
        trace_reply,
    )

    by_level = dict(llm.simulated_accuracy_by_level)
    answers, replies = {}, {}
    for records, templates in questions.values():
        for r in records:
            key = llm_messages(llm, r, templates)[-1]["content"]
            answers[key] = (r.answer, r.kind, len(r.choices), llm.simulated_accuracy_of(r))
            if llm.simulated_reply == "trace" and "ops" in r.metadata:
                replies[key] = functools.partial(trace_reply, r)
    policy = gold_answer_policy(
        answers, llm.simulated_accuracy, llm.simulated_seed, replies=replies, counter=counter
    )
    difficulty = (llm.simulated_difficulty_decay, llm.simulated_difficulty_ceiling)
    identity = simulated_identity(
        llm.simulated_accuracy, llm.simulated_seed, by_level, difficulty, llm.simulated_reply
    )
    how = ("by digit work" if difficulty[0] > 0 else "by difficulty level" if by_level
           else llm.simulated_accuracy)  # fmt: skip
    print(
        f"corea-jax: SIMULATED LLM in-process ({identity}, model name {llm.model!r}, "
        f"accuracy {how}, {llm.simulated_reply} replies, usage {llm.billed_usage}); no real "
        "model is measured",
        file=sys.stderr,
    )
    return SimulatedChatBackend(policy, llm.model, identity)


def answer_with_llm(
    llm: LLMConfig, questions: dict, cache_path: Path, count_tokens, seed: int = 0
) -> tuple[dict[str, list[LLMResponse]], dict]:
    """`{name: [LLMResponse]}` in question order, and the call counts (`calls`, `cache_hits`,
    `failed_questions`, and `server_requests`: the simulated LLM's answered calls, else None).

    `count_tokens`: the SLM's `TokenCounter` (`SLMAnswerer.token_counter`), which bills every
    answer with `llm.usage` "slm" and otherwise counts only what a server leaves out (over the
    message contents); or a `text -> tokens` function (that fallback alone)."""
    requests = {
        name: [LLMRequest(f"{name}/{r.id}", llm_messages(llm, r, t)) for r in records]
        for name, (records, t) in questions.items()
    }
    counter = count_tokens if isinstance(count_tokens, TokenCounter) else None
    if llm.billed_usage == "slm" and (counter is None or counter.chat is None):
        raise CoreaError("llm.usage='slm': no SLM token counter to count the LLM's tokens with")
    if llm.billed_usage != "slm" and counter is not None:
        count_tokens = counter.contents()
    slm_count = counter if llm.billed_usage == "slm" else None
    backend = simulated_backend(llm, questions, slm_count) if llm.simulated else None
    cache = ResponseCache(cache_path)
    client = LLMClient(
        None if llm.simulated else llm.endpoint(),
        params=llm.sampling(),
        options=llm.client(),
        cache=cache,
        count_tokens=count_tokens,
        backend=backend,
        seed=seed,
    )
    flat = [q for qs in requests.values() for q in qs]
    desc = f"LLM {llm.model}" + (" (SIMULATED)" if llm.simulated else "")
    try:
        with progress(len({client.key(q) for q in flat}), desc, "question") as bar:

            def answered(_: LLMResponse) -> None:
                st = client.stats
                bar.update(cached=st.cache_hits, failed=st.failed_questions,
                           faults=sum(st.faults.values()))  # fmt: skip

            answers = client.complete(flat, progress=answered)
    finally:
        client.close()
        cache.close()
    stats = {
        "calls": client.stats.calls,
        "cache_hits": client.stats.cache_hits,
        "failed_questions": client.stats.failed_questions,
        "server_requests": backend.requests if backend is not None else None,
    }
    out, i = {}, 0
    for name, qs in requests.items():
        out[name] = answers[i : i + len(qs)]
        i += len(qs)
    return out, stats

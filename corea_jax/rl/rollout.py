"""Rollout: G completions of each of B prompts, sampled with the current parameters, as texts.

Axis letters (used in every shape comment of `corea_jax.rl`): B prompts (questions) in a
batch, G samples per prompt, R = B * G rows (one completion each, row r = prompt r // G,
sample r % G), T sequence positions of a forward pass (= P + C in the update), P prompt slots,
C completion slots, V vocab.

One copy of the weights: the sampler is handed the trainer's current (sharded) parameters on
every call, so there is no trainer -> sampler weight sync. The rollout log-probs come from the
sampler (temperature 1), so no extra forward pass computes the old policy.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from corea_jax.sampling import Sampler, make_method
from corea_jax.sampling.sampler import SampleBatch
from corea_jax.scoring.score import ScoreItem


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """The `config.rollout` section: how GRPO groups are sampled.

    Defaults are PAPER.md's: G = 8, temperature 1.0, at most 2048 new tokens (C); no top-p or
    top-k truncation (`top_k = 0` is off).
    """

    group_size: int = 8  # G
    max_new_tokens: int = 2048  # C
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def method(self):
        return make_method(self.temperature, self.top_k or None, self.top_p)


@dataclasses.dataclass(frozen=True)
class Task:
    """What the loop trains (or evaluates) on, one entry per question.

    prompts: chat-template token ids; items: what grading each question's answers needs (gold,
    kind, multiple-choice options); references: SFT target completions, or None; levels: each
    question's difficulty level (`corea_jax.rl.task.record_level`, None where it has none), or
    None when the source has no levels (the per-level training metrics).
    """

    prompts: list[list[int]]
    items: list[ScoreItem]
    references: list[str] | None = None
    levels: list[str | None] | None = None


def rollout_seed(seed: int, step: int) -> int:
    """The sampler seed of training step `step` (every rollout stream follows from it)."""
    return seed * 1_000_003 + step


@dataclasses.dataclass(frozen=True)
class Rollout:
    out: SampleBatch  # R rows: tokens [R, C], lengths [R], logprobs [R, C], prompt_index [R]
    texts: list[str]  # R decoded completions
    seconds: float  # sampling time (decoding to text excluded)


def decode_rows(tokenizer, out: SampleBatch) -> list[str]:
    """The R sampled completions as text (special tokens dropped)."""
    return [
        tokenizer.decode(out.row_tokens(r), skip_special_tokens=True)
        for r in range(len(out.lengths))
    ]


def sample_groups(
    sampler: Sampler,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    config: RolloutConfig,
    *,
    seed: int,
    params,
) -> Rollout:
    """G samples of each of the B `prompts` under `params`: R = B * G rows."""
    t0 = time.perf_counter()
    out = sampler.generate(
        list(prompts),
        max_new_tokens=config.max_new_tokens,
        n=config.group_size,
        method=config.method(),
        seed=seed,
        params=params,
    )
    seconds = time.perf_counter() - t0
    return Rollout(out=out, texts=decode_rows(tokenizer, out), seconds=seconds)

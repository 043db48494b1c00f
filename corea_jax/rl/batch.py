"""Batch layout on the host, its shardings on the mesh, and the jitted update per batch shape.

A batch is R rows of [left-padded prompt (P slots) | completion (C slots)] (`train_step.Batch`,
laid out by `train_step.make_batch`). Rows are split over the mesh's batch axes; positions are
not split. Each distinct (R, C) compiles the update once (`StepCache`): C is a sampler bucket,
so a run sees only a handful of shapes.

SFT batches (the supervised warm-up) put each question's reference completion in the
completion slots, padded to a multiple of 16: finer than the sampler's buckets, because SFT
batches are full of long traces, and the few shapes this gives compile once each.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from corea_jax.parallel.sharding import DEFAULT_RULES, named_sharding, to_host
from corea_jax.rl import grpo
from corea_jax.rl.train_step import Batch, completion_logprobs, jit_train_step, make_batch


def batch_shardings(
    mesh: Mesh, rows: int, prompt_slots: int, completion_len: int, *, with_ref: bool
) -> Batch:
    """The NamedShardings of a Batch of R = `rows` rows, T = P + C positions: rows split."""
    t = prompt_slots + completion_len
    rows_t = named_sharding(mesh, ("batch", None), (rows, t), DEFAULT_RULES)
    rows_c = named_sharding(mesh, ("batch", None), (rows, completion_len))
    return Batch(
        tokens=rows_t,
        valid=rows_t,
        weights=rows_c,
        advantages=rows_c,  # [R, C]: per-token advantages (`AdvantageConfig.spans`)
        old_logprobs=rows_c,
        ref_logprobs=rows_c if with_ref else None,
    )


class StepCache:
    """The jitted update and the batch shardings of each batch shape (R, C), built once.

    `step_options` are `jit_train_step`'s keyword arguments (optimizer, loss_config, mode,
    micro_batches, compute_dtype, compute).
    """

    def __init__(
        self, graphdef, state_shardings, mesh: Mesh, *, prompt_slots: int, with_ref: bool,
        **step_options,
    ):  # fmt: skip
        self.graphdef, self.state_shardings, self.mesh = graphdef, state_shardings, mesh
        self.prompt_slots, self.with_ref, self.step_options = prompt_slots, with_ref, step_options
        self._steps: dict[tuple[int, int], tuple[Batch, Callable]] = {}

    def __call__(self, rows: int, completion_len: int) -> tuple[Batch, Callable]:
        """(R, C) -> (the batch's shardings, the jitted `(state, batch) -> (state, metrics)`)."""
        key = (rows, completion_len)
        if key not in self._steps:
            shardings = batch_shardings(
                self.mesh, rows, self.prompt_slots, completion_len, with_ref=self.with_ref
            )
            step = jit_train_step(
                self.graphdef, self.state_shardings, shardings, self.mesh, **self.step_options
            )
            self._steps[key] = shardings, step
        return self._steps[key]


def sft_batch(
    prompts: Sequence[Sequence[int]],
    references: Sequence[Sequence[int]],
    *,
    prompt_slots: int,
    pad_id: int,
) -> tuple[Batch, dict]:
    """B prompts and their tokenised reference completions (EOS included) -> a B-row Batch."""
    c = -(-max(len(t) for t in references) // 16) * 16
    completions = np.full((len(references), c), pad_id, np.int32)
    for r, t in enumerate(references):
        completions[r, : len(t)] = t
    lengths = np.array([len(t) for t in references], np.int32)
    batch = make_batch(
        prompts, np.arange(len(references)), completions, lengths,
        prompt_slots=prompt_slots, loss_config=grpo.LossConfig(), pad_id=pad_id,
    )  # fmt: skip
    return batch, {"completion_length": float(lengths.mean())}


def reference_tokens(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """SFT target texts -> token ids, each ended by the tokenizer's EOS (when it has one)."""
    eos = tokenizer.eos_token_id
    return [
        tokenizer(text, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        for text in texts
    ]


class ReferencePolicy:
    """The frozen reference policy of the KL penalty (beta > 0): a copy of the initial
    parameters (in the model's dtype), made only when it is used (with beta = 0 no reference
    model exists). `logprob_chunk` (`config.compute`) keeps its forward from holding [R, C, V]
    logits."""

    def __init__(self, graphdef, params, logprob_chunk: int = 0):
        self.params = jax.tree.map(jnp.copy, params)
        self._logprobs = jax.jit(
            functools.partial(completion_logprobs, graphdef, logprob_chunk=logprob_chunk),
            static_argnums=(3,),
        )

    def add_logprobs(self, batch: Batch) -> Batch:
        """`batch` with `ref_logprobs` [R, C] filled (0 off the completion)."""
        ref, _ = self._logprobs(self.params, batch.tokens, batch.valid, batch.weights.shape[1])
        return batch._replace(ref_logprobs=to_host(ref) * (batch.weights > 0))

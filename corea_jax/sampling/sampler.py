"""Batched KV-cache sampling: jitted prefill + `lax.while_loop` decode.

Axis letters are `corea_jax.models.transformer`'s: B prompts, G samples per prompt, R = B x G
rows (row b * G + j is sample j of prompt b) from the prefill on, P prompt slots, C completion
slots, S = P + C key slots, K kv heads, H head dim, V vocab.

Layout. Prompts are left-padded to a bucketed length P, so every row's last prompt token sits at
slot P - 1 and decode step i writes slot P + i for all rows at once (one `dynamic_update_slice`
per layer). The KV cache is `init_cache`'s: per layer k [R, K, H, S], v [R, K, S, H]. A row's
positions count its real tokens only, so padding changes no logits. The cache lives inside one
jitted call: XLA updates the while-loop carry in place.

Segments. Every decode step reads the whole cache, so slots not yet written cost time. The
C completion slots are split into `decode_segments` equal segments, one `while_loop` each: during
segment j the cache holds S = P + (end of segment j) slots, and it grows (one copy) between
segments. With 4 segments a step reads on average P + 5C/8 slots instead of P + C; the price is
one compiled loop body per segment.

Groups. The G = `n` samples of a prompt share one prefill: the prefilled cache and last logits
are repeated G times along the batch axis.

Buckets. P and C are rounded up to quarter-octave buckets (`bucket`: 16, 32, 48, 64, 80, 96,
112, 128, 160, ...), so a new prompt length or `max_new_tokens` mostly reuses a compiled
program; `max_new_tokens` itself is a traced argument.

Stopping. A row stops on an EOS id, on a stop token sequence (matched in the loop against the
row's last tokens) or at `max_new_tokens`; the loop exits as soon as every row is done. Each
iteration draws a token and runs the forward pass that gives the next token's logits, so the
last token is drawn after the loop: C tokens cost one prefill and C - 1 decode passes. Stop
*strings* (text) are applied on the host afterwards by `apply_stop_strings`, which cuts at the
first token boundary whose decoded prefix contains one, so tokens, log-probs and text agree.

Log-probs. For each sampled token two values are returned: `logprobs` under the model itself
(temperature 1, no truncation: what the GRPO ratio against the rollout policy needs) and
`processed_logprobs` under the distribution actually sampled from (temperature, top-k/top-p).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from corea_jax.errors import CoreaError
from corea_jax.models.transformer import (
    CausalLM,
    LayerCache,
    causal_mask,
    init_cache,
    positions_from_mask,
)
from corea_jax.parallel.sharding import named_sharding, put_global, to_host
from corea_jax.sampling.methods import Greedy, token_logprobs

FINISH_REASONS = ("length", "eos", "stop")
GREEDY = Greedy()


class DecodeState(NamedTuple):
    """The while-loop carry. Rows are R = B x G (prompts x samples), flattened."""

    step: jax.Array  # [] int32: index of the token sampled next
    cache: tuple[LayerCache, ...]  # per layer k [R, K, H, S], v [R, K, S, H]
    logits: jax.Array  # [R, V] float32: the model's logits for token `step`
    tokens: jax.Array  # [R, C] int32 sampled tokens, pad_id once a row is done
    logprobs: jax.Array  # [R, C] float32 log-prob under the model (temperature 1)
    processed_logprobs: jax.Array  # [R, C] float32 log-prob under the sampling distribution
    lengths: jax.Array  # [R] int32 tokens generated (the EOS / stop token included)
    recent: jax.Array  # [R, longest stop sequence] int32 last tokens, for stop matching
    done: jax.Array  # [R] bool
    finish: jax.Array  # [R] int32 index into FINISH_REASONS
    row_keys: jax.Array  # [R] PRNG keys, one per row


@dataclasses.dataclass
class SampleBatch:
    """Host-side result. Rows are R = B x G (prompts x samples), flattened: row r is sample
    r % G of prompt r // G; C = max_new_tokens."""

    tokens: np.ndarray  # [R, C] int32
    lengths: np.ndarray  # [R] int32
    logprobs: np.ndarray  # [R, C] float32 (0 past the length)
    processed_logprobs: np.ndarray  # [R, C] float32
    finish_reasons: list[str]  # [R]
    prompt_index: np.ndarray  # [R] int32
    texts: list[str] | None = None

    def row_tokens(self, row: int) -> list[int]:
        return self.tokens[row, : self.lengths[row]].tolist()


def bucket(length: int, min_bucket: int = 16) -> int:
    """The smallest bucket >= length: min_bucket, or a quarter-octave step of a power of two.

    A length in (2^k / 2, 2^k] rounds up to a multiple of max(min_bucket, 2^k / 8): four buckets
    per octave, so padding wastes under 25% of the slots (power-of-two buckets waste up to 100%,
    and every padded slot costs KV-cache reads on each decode step and FLOPs in the update).
    """
    if length <= min_bucket:
        return min_bucket
    step = max(min_bucket, (1 << (length - 1).bit_length()) // 8)
    return -(-length // step) * step


def prefill(model: CausalLM, tokens: jax.Array, valid: jax.Array, cache_len: int, cache_dtype):
    """tokens, valid [B, P] -> (last-token logits [B, V], cache with S = cache_len)."""
    b, p = tokens.shape
    mask = jnp.pad(causal_mask(valid), ((0, 0), (0, 0), (0, cache_len - p)))  # [B, P, S]
    cache = init_cache(model.config, b, cache_len, cache_dtype)
    hidden, cache = model.hidden_states(tokens, positions_from_mask(valid), mask, cache, 0)
    return model.logits(hidden[:, -1]), cache


def decode_step(model, cache, token, step, prompt_lengths, prompt_slots: int):
    """Feeds token [B] as decode step `step` -> (logits [B, V], cache).

    The token is written at slot prompt_slots + step; each row attends to its own prompt slots
    (not its left padding) and to all decode slots up to this one.
    """
    slot = prompt_slots + step
    s = jnp.arange(cache[0].v.shape[2])
    pad = prompt_slots - prompt_lengths
    mask = (s[None, :] >= pad[:, None]) & (s[None, :] <= slot)  # [B, S]
    positions = (prompt_lengths + step)[:, None]
    hidden, cache = model.hidden_states(token[:, None], positions, mask[:, None, :], cache, slot)
    return model.logits(hidden[:, 0]), cache


@functools.partial(
    jax.jit,
    static_argnames=(
        "graphdef", "g", "c", "segments", "method", "eos_ids", "stop_seqs", "pad_id", "mesh",
    ),
)  # fmt: skip
def _generate(
    graphdef, state, tokens, valid, key, max_new_tokens,
    *, g, c, segments, method, eos_ids, stop_seqs, pad_id, mesh,
):  # fmt: skip
    """tokens, valid [B, P] (B prompts) -> tokens, logprobs, processed_logprobs [R, C] and
    lengths, finish [R]: G samples per prompt, C completion slots (bucketed)."""
    model = nnx.merge(graphdef, state)
    cfg = model.config
    b, p = tokens.shape
    cache_dtype = model.model.embed_tokens.embedding[...].dtype
    ends = segment_ends(c, segments)
    logits, cache = prefill(model, tokens, valid, p + ends[0], cache_dtype)
    prompt_lengths = valid.sum(axis=1).astype(jnp.int32)
    if g > 1:
        logits = jnp.repeat(logits, g, axis=0)
        cache = jax.tree.map(lambda x: jnp.repeat(x, g, axis=0), cache)
        prompt_lengths = jnp.repeat(prompt_lengths, g, axis=0)
    rows = b * g  # R from here on: prompts x G

    def constrain(cache):
        if mesh is None:
            return cache
        shape = (rows, cfg.num_kv_heads, cache[0].v.shape[2], cfg.head_dim)
        spec = named_sharding(mesh, ("batch", "kv_heads", None, None), shape)
        return jax.lax.with_sharding_constraint(cache, jax.tree.map(lambda _: spec, cache))

    cache = constrain(cache)

    stops = np.full((max(len(stop_seqs), 1), max([len(s) for s in stop_seqs] + [1])), -1, np.int32)
    for i, seq in enumerate(stop_seqs):
        stops[i, stops.shape[1] - len(seq) :] = seq  # right-aligned, -1 = wildcard
    stops = jnp.asarray(stops)
    eos = jnp.asarray(eos_ids if eos_ids else (-1,), jnp.int32)

    init = DecodeState(
        step=jnp.int32(0),
        cache=cache,
        logits=logits,
        tokens=jnp.full((rows, c), pad_id, jnp.int32),
        logprobs=jnp.zeros((rows, c), jnp.float32),
        processed_logprobs=jnp.zeros((rows, c), jnp.float32),
        lengths=jnp.zeros((rows,), jnp.int32),
        recent=jnp.full((rows, stops.shape[1]), -2, jnp.int32),
        done=jnp.zeros((rows,), bool),
        finish=jnp.zeros((rows,), jnp.int32),
        row_keys=jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(rows)),
    )

    def record(st: DecodeState) -> tuple[DecodeState, jax.Array]:
        """Draws token `step` from st.logits and records it -> (state, tokens [B])."""
        keys = jax.vmap(jax.random.fold_in, (0, None))(st.row_keys, st.step)
        tok, proc_lp = method.draw(st.logits, keys)
        model_lp = token_logprobs(st.logits, tok)
        active = ~st.done
        column = lambda buf, value, fill: jax.lax.dynamic_update_slice(  # noqa: E731
            buf, jnp.where(active, value, fill)[:, None].astype(buf.dtype), (0, st.step)
        )
        recent = jnp.concatenate([st.recent[:, 1:], tok[:, None]], axis=1)
        is_eos = jnp.any(tok[:, None] == eos[None, :], axis=1)
        matches = (recent[:, None, :] == stops[None]) | (stops[None] == -1)
        is_stop = jnp.any(jnp.all(matches, axis=2) & jnp.any(stops != -1, axis=1)[None], axis=1)
        finish = jnp.where(active & is_eos, 1, jnp.where(active & is_stop, 2, st.finish))
        done = st.done | (active & (is_eos | is_stop)) | (st.step + 1 >= max_new_tokens)
        st = st._replace(
            step=st.step + 1,
            tokens=column(st.tokens, tok, pad_id),
            logprobs=column(st.logprobs, model_lp, 0.0),
            processed_logprobs=column(st.processed_logprobs, proc_lp, 0.0),
            lengths=st.lengths + active.astype(jnp.int32),
            recent=recent,
            done=done,
            finish=finish,
        )
        return st, tok

    def body(st: DecodeState) -> DecodeState:
        step = st.step
        st, tok = record(st)
        logits, cache = decode_step(model, st.cache, tok, step, prompt_lengths, p)
        return st._replace(cache=cache, logits=logits)

    # Every iteration draws a token and feeds it forward; the last token is drawn after the
    # loops, so no forward pass runs for logits nobody samples from.
    def cond(st: DecodeState):
        return (st.step < max_new_tokens - 1) & ~jnp.all(st.done)

    out = init
    for i, end in enumerate(ends):
        if i:  # the next segment's slots; a copy of the cache, once per segment
            out = out._replace(cache=constrain(grow_cache(out.cache, p + end)))
        seg_cond = lambda st, end=end: cond(st) & (st.step < end)  # noqa: E731
        out = jax.lax.while_loop(seg_cond, body, out)
    out, _ = record(out)  # a no-op for rows already done
    return out.tokens, out.lengths, out.logprobs, out.processed_logprobs, out.finish


def segment_ends(completion_slots: int, segments: int) -> tuple[int, ...]:
    """Decode steps at which each segment ends: `segments` equal parts of at least 16 steps."""
    count = max(1, min(segments, completion_slots // 16))
    size = -(-completion_slots // count)
    return tuple(min(size * (i + 1), completion_slots) for i in range(count))


def grow_cache(cache: tuple[LayerCache, ...], slots: int) -> tuple[LayerCache, ...]:
    """Pads every layer's k [B, K, H, S] and v [B, K, S, H] with empty slots up to S = slots."""

    def pad(x, axis):
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, slots - x.shape[axis])
        return jnp.pad(x, widths)

    return tuple(LayerCache(pad(c.k, 3), pad(c.v, 2)) for c in cache)


class Sampler:
    """Samples from a CausalLM's graph with whatever parameters it is given.

    The trainer passes its current (sharded) parameter State on each call, so the sampler and
    the trainer share one copy of the weights: there is nothing to synchronise.
    """

    def __init__(
        self,
        model: CausalLM,
        *,
        eos_ids: Sequence[int] | None = None,
        pad_id: int = 0,
        mesh: Mesh | None = None,
        min_bucket: int = 16,
        memory_budget_bytes: int | None = None,
        decode_segments: int = 4,
    ):
        self.graphdef, self.state = nnx.split(model)
        self.config = model.config
        self.eos_ids = tuple(model.config.eos_token_ids if eos_ids is None else eos_ids)
        self.pad_id = pad_id
        self.mesh = mesh
        self.min_bucket = min_bucket
        self.memory_budget_bytes = memory_budget_bytes
        if decode_segments < 1:
            raise CoreaError(f"decode_segments must be >= 1, got {decode_segments}")
        self.decode_segments = decode_segments

    @classmethod
    def for_tokenizer(cls, model: CausalLM, tokenizer, **kwargs) -> Sampler:
        """A sampler that stops at the model's EOS ids and the tokenizer's, padding with the
        tokenizer's pad id (0 when it has none): the one place these are decided."""
        eos = set(model.config.eos_token_ids)
        if tokenizer.eos_token_id is not None:
            eos.add(tokenizer.eos_token_id)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return cls(model, eos_ids=sorted(eos), pad_id=pad, **kwargs)

    def kv_cache_bytes(self, rows: int, slots: int) -> int:
        cfg = self.config
        itemsize = jnp.dtype(self.state["model"]["embed_tokens"]["embedding"][...].dtype).itemsize
        return 2 * cfg.num_layers * rows * slots * cfg.num_kv_heads * cfg.head_dim * itemsize

    def _check_memory(self, rows: int, prompt_slots: int, completion_slots: int) -> None:
        """Fails fast when the KV cache would not fit: the full cache, plus the previous
        segment's cache, which lives on while the last decode segment's cache is grown."""
        budget = self.memory_budget_bytes
        if budget is None:
            stats = jax.local_devices()[0].memory_stats() or {}
            if "bytes_limit" not in stats:
                return  # host memory: no reliable figure
            budget = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
            if self.mesh is not None:
                budget *= self.mesh.size
        slots = prompt_slots + completion_slots
        ends = segment_ends(completion_slots, self.decode_segments)
        growing = self.kv_cache_bytes(rows, prompt_slots + ends[-2]) if len(ends) > 1 else 0
        need = self.kv_cache_bytes(rows, slots) + growing
        if need > budget:
            growth = (
                f", {growing / 2**30:.2f} GiB of it while the last segment grows" if growing else ""
            )
            raise CoreaError(
                f"KV cache for {rows} rows x {slots} slots needs {need / 2**30:.2f} GiB "
                f"({self.config.num_layers} layers x k/v x {self.config.num_kv_heads} kv heads x "
                f"{self.config.head_dim}{growth}), over the {budget / 2**30:.2f} GiB memory "
                "budget; lower the batch, n or max_new_tokens"
            )

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        n: int = 1,
        method=GREEDY,
        seed: int = 0,
        stop_token_seqs: Sequence[Sequence[int]] = (),
        params: nnx.State | None = None,
    ) -> SampleBatch:
        """Samples G = `n` completions for each tokenised prompt (lists of ids, no padding)."""
        if not prompts:
            raise CoreaError("generate: no prompts")
        if max_new_tokens < 1:
            raise CoreaError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if any(len(p) == 0 for p in prompts):
            raise CoreaError("generate: a prompt is empty")
        p = bucket(max(len(x) for x in prompts), self.min_bucket)
        c = bucket(max_new_tokens, self.min_bucket)
        self._check_memory(len(prompts) * n, p, c)
        tokens = np.full((len(prompts), p), self.pad_id, np.int32)
        valid = np.zeros((len(prompts), p), bool)
        for i, prompt in enumerate(prompts):
            tokens[i, p - len(prompt) :] = prompt
            valid[i, p - len(prompt) :] = True
        tokens, valid = jnp.asarray(tokens), jnp.asarray(valid)
        if self.mesh is not None:
            batch = named_sharding(self.mesh, ("batch", None), tokens.shape)
            tokens, valid = put_global(tokens, batch), put_global(valid, batch)
        out = _generate(
            self.graphdef,
            self.state if params is None else params,
            tokens,
            valid,
            jax.random.key(seed),
            jnp.int32(max_new_tokens),
            g=n,
            c=c,
            segments=self.decode_segments,
            method=method,
            eos_ids=self.eos_ids,
            stop_seqs=tuple(tuple(int(t) for t in s) for s in stop_token_seqs),
            pad_id=self.pad_id,
            mesh=self.mesh,
        )
        toks, lengths, lps, plps, finish = (to_host(x) for x in out)
        return SampleBatch(
            tokens=toks[:, :max_new_tokens],
            lengths=lengths,
            logprobs=lps[:, :max_new_tokens],
            processed_logprobs=plps[:, :max_new_tokens],
            finish_reasons=[FINISH_REASONS[f] for f in finish],
            prompt_index=np.repeat(np.arange(len(prompts), dtype=np.int32), n),
        )


def apply_stop_strings(
    batch: SampleBatch, decode, stop_strings: Sequence[str] = (), include_stop: bool = True
) -> SampleBatch:
    """Decodes every row to text and cuts rows at the first stop string.

    A row is cut at the shortest token prefix whose decoded text contains a stop string (found by
    bisection: containment only grows with the prefix), so tokens, log-probs and text stay
    consistent; the text keeps the stop string when `include_stop`. `decode(ids) -> str`.
    """
    texts = []
    for row in range(len(batch.lengths)):
        ids = batch.row_tokens(row)
        text = decode(ids)
        hit = [s for s in stop_strings if s in text]
        if hit:
            lo, hi = 1, len(ids)
            while lo < hi:
                mid = (lo + hi) // 2
                if any(s in decode(ids[:mid]) for s in stop_strings):
                    hi = mid
                else:
                    lo = mid + 1
            batch.lengths[row] = lo
            batch.tokens[row, lo:] = 0
            batch.logprobs[row, lo:] = 0
            batch.processed_logprobs[row, lo:] = 0
            batch.finish_reasons[row] = "stop"
            text = decode(ids[:lo])
            first = min((text.find(s), s) for s in stop_strings if s in text)
            text = text[: first[0] + (len(first[1]) if include_stop else 0)]
        texts.append(text)
    batch.texts = texts
    return batch

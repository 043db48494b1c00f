"""The serving engine's jitted kernels: admit rows into a shared KV cache, decode a segment.

Departure from `corea_jax.sampling.sampler`, and why. The offline sampler runs one batch from
prefill to the last token; a server must let requests join and leave while others decode
(continuous batching). The layout here keeps the sampler's one shared write slot per step, so
the model's `hidden_states(..., cache_index)` is used unchanged:

- The cache has B rows (the engine's slots) and S slots, per layer k [B, K, H, S] and
  v [B, K, S, H] (`init_cache`'s layout), used as a ring: a global pointer t in [0, S) is the
  slot every row writes next, and it wraps from S - 1 to 0.
- A row admitted at pointer t is prefilled alone ([A, P] new rows, left-padded to a prompt
  bucket P) and its keys/values are copied to the ring slots t - P, ..., t - 1 (mod S) of its
  row; `start[b]` is the slot of its first real token. A row sees the slots from its start up to
  the one being written, going forward around the ring: slot s is visible when
  (t - s) mod S <= (t - start[b]) mod S. Softmax does not care where a key sits, and RoPE was
  applied when the key was written, so wrapping changes nothing a row computes.
- Positions are per row (`pos[b]`: the position of the next token fed), so RoPE sees each
  row's own sequence whatever the slot.
- S >= the longest row (prompt + answer): a live row never overwrites its own oldest slot, and
  nothing is ever moved (an earlier layout shifted the whole cache left when t reached S: one
  copy of every row, every few segments under load).

Sampling is per row (temperature [B], top_p [B], one PRNG key per row folded with the row's
token count), so requests with different parameters share one compiled program and a
request's draws do not depend on which other requests share its batch. When every row is
greedy, no key or uniform is made at all.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from corea_jax.models.transformer import LayerCache, init_cache
from corea_jax.sampling.methods import first_argmax, inverse_cdf_sample, row_uniforms
from corea_jax.sampling.sampler import prefill


class Graph:
    """A model's nnx GraphDef as a static jit argument hashed by identity: hashing the GraphDef
    itself costs about 0.2 ms, on every kernel call (several per decode segment)."""

    __slots__ = ("graphdef",)

    def __init__(self, graphdef):
        self.graphdef = graphdef

    def merge(self, params):
        return nnx.merge(self.graphdef, params)


class Rows(NamedTuple):
    """The engine's device state; B = rows, S = ring slots."""

    cache: tuple[LayerCache, ...]  # per layer k [B, K, H, S], v [B, K, S, H]
    logits: jax.Array  # [B, V] float32: logits of each row's next token
    start: jax.Array  # [B] int32 in [0, S): ring slot of the row's first prompt token
    pos: jax.Array  # [B] int32: position id of the next token fed


def init_rows(config, rows: int, slots: int, dtype) -> Rows:
    return Rows(
        cache=init_cache(config, rows, slots, dtype),
        logits=jnp.zeros((rows, config.vocab_size), jnp.float32),
        start=jnp.zeros((rows,), jnp.int32),
        pos=jnp.zeros((rows,), jnp.int32),
    )


def draw_rows(logits, temperature, top_p, keys):
    """logits [B, V], temperature [B] (0 = greedy), top_p [B] in (0, 1], keys [B] -> [B] int32.

    Temperature, then the nucleus (the smallest most-likely set of mass >= top_p, the top token
    always kept), then one inverse-CDF draw per row; the sort runs only when a row asks for it.
    """
    greedy = first_argmax(logits)
    scaled = logits / jnp.maximum(temperature, 1e-6)[:, None]

    def nucleus(x):
        order = jnp.argsort(-x, axis=-1)
        sorted_x = jnp.take_along_axis(x, order, axis=-1)
        probs = jax.nn.softmax(sorted_x, axis=-1)
        keep_sorted = (jnp.cumsum(probs, axis=-1) - probs) < top_p[:, None]
        rows = jnp.arange(x.shape[0])[:, None]
        keep = jnp.zeros_like(keep_sorted).at[rows, order].set(keep_sorted)
        return jnp.where(keep, x, -jnp.inf)

    processed = jax.lax.cond(jnp.any(top_p < 1.0), nucleus, lambda x: x, scaled)
    sampled = inverse_cdf_sample(processed, row_uniforms(keys))
    return jnp.where(temperature > 0, sampled, greedy)


def ring_visible(slot, start, slots: int):
    """slot [] the ring slot written now, start [B] -> [B, S] bool: the slots each row sees
    (its own, from `start` forward around the ring to `slot`)."""
    s = jnp.arange(slots, dtype=jnp.int32)
    return (slot - s[None, :]) % slots <= ((slot - start) % slots)[:, None]


@functools.partial(jax.jit, static_argnames=("graph",), donate_argnames=("rows",))
def admit(graph: Graph, params, rows: Rows, tokens, valid, slots, write, t):
    """Prefills new rows into the shared cache.

    tokens, valid [A, P] (left-padded prompts), slots [A] int32 distinct row indices, write [A]
    bool (False: a padding entry, its row is left as it is), t [] int32 the write pointer in
    [0, S): row slots[a] gets the prompt at ring slots t - P, ..., t - 1 (mod S).
    """
    model = graph.merge(params)
    a, p = tokens.shape
    ring = rows.cache[0].v.shape[2]
    dtype = rows.cache[0].k.dtype
    logits, fresh = prefill(model, tokens, valid, p, dtype)
    # Ring slot s holds prompt column (s - t + P) mod S when that is < P (a gather, so a prompt
    # that wraps past slot S - 1 needs no second write).
    column = (jnp.arange(ring, dtype=jnp.int32) - t + p) % ring
    inside = column < p
    column = jnp.minimum(column, p - 1)

    def place(big, new, axis):
        old = big[slots]  # [A, ...] the admitted rows
        shape = [1, 1, 1, 1]
        shape[axis] = ring
        placed = jnp.take(new.astype(big.dtype), column, axis=axis)
        keep = write[:, None, None, None] & inside.reshape(shape)
        return big.at[slots].set(jnp.where(keep, placed, old))

    cache = tuple(
        LayerCache(place(c.k, f.k, 3), place(c.v, f.v, 2))
        for c, f in zip(rows.cache, fresh, strict=True)
    )
    lengths = valid.sum(axis=1).astype(jnp.int32)
    pick = lambda old, new: old.at[slots].set(jnp.where(write, new, old[slots]))  # noqa: E731
    return Rows(
        cache=cache,
        logits=rows.logits.at[slots].set(jnp.where(write[:, None], logits, rows.logits[slots])),
        start=pick(rows.start, (t - lengths) % ring),
        pos=pick(rows.pos, lengths),
    )


@functools.partial(
    jax.jit, static_argnames=("graph", "width", "steps", "eos_ids"), donate_argnames=("rows",)
)
def decode(graph: Graph, params, rows: Rows, t, index, temperature, top_p, seeds, counts, budget,
           *, width, steps, eos_ids):  # fmt: skip
    """Up to `steps` decode steps of the rows `index`, writing ring slots t, t + 1, ... (mod S).

    index [width] int32 distinct rows (all B rows in order when width = B: then nothing is
    copied; else they are gathered and scattered back, so the width follows how many rows are
    live, not where they sit). Per position of `index`: temperature, top_p [width]; seeds
    [width] int32 per-row seeds, counts [width] tokens each row has drawn so far (the fold-in
    index, so a row's draws do not depend on the batch); budget [width] tokens each row may
    still draw (0 for a free row). Stops early once every row is done (EOS or budget). Returns
    (rows, tokens [width, steps], drawn [width] tokens kept per row, eos [width] bool, steps
    run), per position.
    """
    model = graph.merge(params)
    gather = width < rows.start.shape[0]
    live = jax.tree.map(lambda x: x[index], rows) if gather else rows
    ring = live.cache[0].v.shape[2]
    eos = jnp.asarray(eos_ids if eos_ids else (-1,), jnp.int32)
    sampling = jnp.any(temperature > 0)

    def draw(logits, i):
        def sample(logits):
            keys = jax.vmap(jax.random.key)(seeds)  # built here: one op, not one per row
            step_keys = jax.vmap(jax.random.fold_in)(keys, counts + i)
            return draw_rows(logits, temperature, top_p, step_keys)

        return jax.lax.cond(sampling, sample, first_argmax, logits)

    def body(carry):
        i, live, out, drawn, done, hit_eos = carry
        tok = draw(live.logits, i)
        active = ~done
        out = out.at[:, i].set(tok)
        drawn = drawn + active.astype(jnp.int32)
        is_eos = jnp.any(tok[:, None] == eos[None, :], axis=1)
        hit_eos = hit_eos | (active & is_eos)
        done = done | is_eos | (drawn >= budget)
        slot = (t + i) % ring
        mask = ring_visible(slot, live.start, ring)  # [width, S]
        hidden, cache = model.hidden_states(
            tok[:, None], live.pos[:, None], mask[:, None, :], live.cache, slot
        )
        live = Rows(cache, model.logits(hidden[:, 0]), live.start, live.pos + 1)
        return i + 1, live, out, drawn, done, hit_eos

    def cond(carry):
        i, _, _, _, done, _ = carry
        return (i < steps) & ~jnp.all(done)

    zeros = jnp.zeros((width,), jnp.int32)
    init = (jnp.int32(0), live, jnp.zeros((width, steps), jnp.int32), zeros,
            budget <= 0, jnp.zeros((width,), bool))  # fmt: skip
    n, live, out, drawn, _, hit_eos = jax.lax.while_loop(cond, body, init)
    if gather:
        live = jax.tree.map(lambda full, part: full.at[index].set(part), rows, live)
    return live, out, drawn, hit_eos, n

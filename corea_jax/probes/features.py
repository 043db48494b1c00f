"""Hidden-state features of the SLM's own forward pass, for a linear probe of correctness.

The probe reads the residual stream of the project's `CausalLM` (no second framework, no copy of
the weights): `hidden_at_layer` runs the embedding and the first k decoder layers exactly as
`CausalLM.hidden_states` does without a cache (same RoPE tables, same causal mask over `valid`),
and stops there.

Which layer. Layers 1..L; negative counts from the end (-1 = L). Layer L is returned *after* the
final RMSNorm (what the LM head reads, so layer L equals `CausalLM.hidden_states`); layers
1..L-1 are the raw residual stream, un-normalised. The probe standardises every feature with the
training set's mean and std, so the missing norm only matters through its per-token scale.

Which token (`FeatureConfig.pooling`, a table of variants):
  "last"             the final token of the completion (the default). It has attended to the
                     whole question, the answer and the stated confidence; it exists even when
                     the output format failed (no `<answer>` to find); and it costs one row of
                     the forward. Probing work reads correctness and truthfulness off late
                     token states: the P(IK) heads of Kadavath et al. 2022 ("Language Models
                     (Mostly) Know What They Know") and the SAPLMA probes of Azaria & Mitchell
                     2023 use the final token.
  "answer_mean"      the mean over the tokens of the answer itself: the caller passes each
                     row's [start, end) span within the completion (`spans`; the cascade finds
                     the `<answer>` text through the tokenizer's offsets,
                     `answer_token_span`); a row whose span is empty (the format failed) falls
                     back to its last token.
  "completion_mean"  the mean over all completion tokens (reasoning, answer and confidence).
An empty completion pools the last prompt token under either rule: `prompt_features` (the
router's input, one prefill, nothing generated) is `completion_features` with empty completions.

Batches. Rows are right-padded to a bucketed length (`corea_jax.sampling.bucket`: quarter-octave
steps of powers of two, the sampler's buckets, so few shapes compile) and the last batch is
filled with one-token dummy rows, so every batch has `batch_size` rows. Right padding with a
causal mask leaves every real token's state independent of the padding and of the other rows.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from corea_jax.errors import CoreaError
from corea_jax.models.rope import inverse_frequencies, rope_tables
from corea_jax.models.transformer import CausalLM, causal_mask, positions_from_mask
from corea_jax.sampling.sampler import bucket


def resolve_layer(layer: int, num_layers: int) -> int:
    """A layer index 1..L or -L..-1 (from the end) -> 1..L; raises naming probe.features.layer."""
    if not isinstance(layer, int) or isinstance(layer, bool) or layer == 0:
        raise CoreaError(f"probe.features.layer={layer!r}: use 1..L or -L..-1 (-1 = last layer)")
    resolved = layer if layer > 0 else num_layers + 1 + layer
    if not 1 <= resolved <= num_layers:
        raise CoreaError(
            f"probe.features.layer={layer}: the model has {num_layers} layers; "
            f"use 1..{num_layers} or -{num_layers}..-1"
        )
    return resolved


def hidden_at_layer(model: CausalLM, tokens: jax.Array, valid: jax.Array, layer: int) -> jax.Array:
    """tokens [B, T] int32, valid [B, T] bool -> float32 [B, T, D]: the residual stream after
    decoder layer `layer` (1..L, or negative from the end); layer L after the final norm.

    Positions are `positions_from_mask(valid)` and the mask `causal_mask(valid)`, as in
    `CausalLM.hidden_states` without a cache. Jittable with `layer` static.
    """
    cfg = model.config
    k = resolve_layer(layer, cfg.num_layers)
    x = model.model.embed_tokens(tokens)
    inv_freq = inverse_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
    rope = rope_tables(positions_from_mask(valid), inv_freq, x.dtype)
    mask = causal_mask(valid)
    for decoder_layer in list(model.model.layers)[:k]:
        x = decoder_layer(x, rope, mask, None, 0)[0]
    if k == cfg.num_layers:
        x = model.model.norm(x)
    return x.astype(jnp.float32)


def _last_token(prompt_len: int, completion_len: int) -> tuple[int, int]:
    end = prompt_len + completion_len
    return end - 1, end


def _completion_span(prompt_len: int, completion_len: int) -> tuple[int, int]:
    if completion_len == 0:
        return prompt_len - 1, prompt_len
    return prompt_len, prompt_len + completion_len


# pooling name -> (prompt length, completion length) -> the [start, end) token span averaged;
# "answer_mean" reads the caller's spans instead (`_batch`).
POOLINGS: dict[str, Callable[[int, int], tuple[int, int]]] = {
    "last": _last_token,
    "answer_mean": _last_token,  # the fallback when a row has no answer span
    "completion_mean": _completion_span,
}


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Which hidden state is the probe's feature vector (see the module docstring).

    layer: 1..L or -L..-1; default -1, the last layer after the final norm (what the LM head
      reads; the one layer every checkpoint has). Middle layers are often as good or better for
      truthfulness probes, so it is a setting.
    pooling: "last" (default: always defined, sees everything, cheapest), "answer_mean" (needs
      the answer spans) or "completion_mean".
    batch_size: rows per jitted forward.
    """

    layer: int = -1
    pooling: str = "last"
    batch_size: int = 16

    def __post_init__(self):
        if not isinstance(self.layer, int) or isinstance(self.layer, bool) or self.layer == 0:
            raise CoreaError(
                f"probe.features.layer={self.layer!r}: use 1..L or -L..-1 (-1 = last layer)"
            )
        if self.pooling not in POOLINGS:
            raise CoreaError(
                f"probe.features.pooling={self.pooling!r}: use one of {', '.join(POOLINGS)}"
            )
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise CoreaError(f"probe.features.batch_size={self.batch_size!r}: must be >= 1")


@functools.partial(jax.jit, static_argnames=("graphdef", "layer"))
def _pooled(graphdef, state, tokens, valid, weights, *, layer):
    """tokens, valid [B, T], weights [B, T] float32 (rows sum to 1) -> [B, D] float32."""
    hidden = hidden_at_layer(nnx.merge(graphdef, state), tokens, valid, layer)
    # Elementwise, not an einsum: a matmul may run at reduced precision on accelerators, and
    # "last" must return the token's state exactly.
    return jnp.sum(hidden * weights[:, :, None], axis=1)


def _batch(rows: Sequence[tuple[list[int], list[int]]], size: int, pooling: str, spans=None):
    """(prompt, completion) pairs -> tokens [B, T] int32, valid [B, T], weights [B, T] float32
    with B = size (dummy one-token rows appended) and T bucketed. `spans`: per row a
    [start, end) within the completion to average ("answer_mean"), empty = the last token."""
    t = bucket(max(len(p) + len(c) for p, c in rows))
    tokens = np.zeros((size, t), np.int32)
    valid = np.zeros((size, t), bool)
    weights = np.zeros((size, t), np.float32)
    valid[:, 0] = True
    weights[:, 0] = 1.0
    for i, (prompt, completion) in enumerate(rows):
        seq = list(prompt) + list(completion)
        tokens[i, : len(seq)] = seq
        valid[i, : len(seq)] = True
        start, end = POOLINGS[pooling](len(prompt), len(completion))
        if spans is not None and spans[i][1] > spans[i][0]:
            start, end = len(prompt) + spans[i][0], len(prompt) + spans[i][1]
        weights[i] = 0.0
        weights[i, start:end] = 1.0 / (end - start)
    return tokens, valid, weights


def completion_features(
    model: CausalLM,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    cfg: FeatureConfig,
    spans: Sequence[tuple[int, int]] | None = None,
) -> np.ndarray:
    """N prompts and N completions (token ids) -> [N, D] float32 pooled hidden states.

    One jitted forward per `cfg.batch_size` rows; an empty completion pools the last prompt
    token. Every prompt must have at least one token. `spans` (pooling "answer_mean", required
    there): each row's answer tokens as a [start, end) within its completion.
    """
    if cfg.pooling == "answer_mean":
        if spans is None or len(spans) != len(completions):
            raise CoreaError("probe features: pooling 'answer_mean' needs one answer span per row")
        for i, (a, b) in enumerate(spans):
            if not 0 <= a <= b <= len(completions[i]):
                raise CoreaError(f"probe features: answer span {(a, b)} of row {i} is outside "
                                 f"its {len(completions[i])} completion tokens")  # fmt: skip
    if len(prompts) != len(completions):
        raise CoreaError(
            f"probe features: {len(prompts)} prompts but {len(completions)} completions"
        )
    for i, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise CoreaError(f"probe features: prompt {i} is empty; a row needs a prompt token")
    layer = resolve_layer(cfg.layer, model.config.num_layers)
    d = model.config.hidden_size
    if not prompts:
        return np.zeros((0, d), np.float32)
    graphdef, state = nnx.split(model)
    rows = list(zip(prompts, completions, strict=True))
    out = []
    for start in range(0, len(rows), cfg.batch_size):
        chunk = rows[start : start + cfg.batch_size]
        part = None if spans is None else spans[start : start + cfg.batch_size]
        tokens, valid, weights = _batch(chunk, cfg.batch_size, cfg.pooling, part)
        pooled = _pooled(graphdef, state, tokens, valid, weights, layer=layer)
        out.append(np.asarray(pooled)[: len(chunk)])
    return np.concatenate(out).astype(np.float32)


def prompt_features(
    model: CausalLM, prompts: Sequence[Sequence[int]], layer: int = -1, batch_size: int = 16
) -> np.ndarray:
    """N prompts -> [N, D] float32: the hidden state at each prompt's last token (the router's
    input: one prefill, nothing generated)."""
    cfg = FeatureConfig(layer=layer, pooling="last", batch_size=batch_size)
    return completion_features(model, prompts, [[] for _ in prompts], cfg)


def answer_token_span(offsets: Sequence[tuple[int, int]], text: str) -> tuple[int, int]:
    """The [start, end) of the tokens covering the text inside `<answer>...</answer>` (the
    first one), from the tokenizer's character `offsets` of `text`; (0, 0) when there is none.
    A token counts when its characters overlap the answer's."""
    open_tag = text.find("<answer>")
    close_tag = text.find("</answer>", open_tag + 1) if open_tag >= 0 else -1
    if open_tag < 0 or close_tag < 0:
        return 0, 0
    lo, hi = open_tag + len("<answer>"), close_tag
    inside = [i for i, (a, b) in enumerate(offsets) if a < hi and b > lo]
    return (inside[0], inside[-1] + 1) if inside else (0, 0)

"""Which completion tokens carry the confidence: the span mask of segment-wise advantages.

Host side, outside any jit: completion token ids + their decoded text -> a `[R, C]` bool mask of
the tokens that overlap the `<confidence>...</confidence>` span the parser reads (the last
complete one, `corea_jax.scoring.parsing`), both tags and everything between them included.
`AdvantageConfig.spans="confidence"` gives those tokens the calibration advantage
(`corea_jax.rl.advantages`).

A tokenizer need not split text at the tags: "</answer><" or "5</" may be one token, a tag or
the digits may be cut into several. **A token counts as in the span when any of its characters
is**, so a token that merges the tag with a neighbour goes to the span (it is pushed by the
calibration advantage, not the correctness one; at most the two boundary tokens of a span).

Token boundaries come from decoding, not from re-encoding the text: sampled ids need not be the
tokenizer's own encoding of their text, so offsets from a fresh encode would describe other
tokens. Boundary k (the character where token k starts) is read from the decoded suffix
`decode(ids[k:])`: its longest common suffix with the full text ends at the text's end, so the
suffix starts at len(text) - (that length). With byte-level BPE a token may end or start
inside a multi-byte UTF-8 character; a decode starting there opens with a replacement
character that the full text does not have, so the common suffix stops after it and the split
character is given to the token holding its first byte (the token holding only its tail then
covers no character of its own, and overlaps the span when the split character lies in the
span's interior). Token i covers [b_i, b_{i+1}); it is in the span [s, e) when b_i < e and
b_{i+1} > s. The span sits near the end of a completion, so the boundaries are searched from
the end (doubling steps, then bisection): a few short decodes per row, not one per token.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from corea_jax.scoring import parsing


def confidence_char_span(text: str, tag: str = "confidence") -> tuple[int, int] | None:
    """(start, end) characters of the last complete `<tag>...</tag>` of `text`, tags included:
    the span the parser reads the confidence from; None when there is none."""
    # The parser's own tag scan, so the span is the one `parse_completion` reads.
    spans = parsing._scan_tags(text, [tag]).spans[tag]
    if not spans:
        return None
    start, _, _, end = spans[-1]
    return start, end


def _common_suffix_len(a: str, b: str) -> int:
    if b.endswith(a):
        return len(a)
    n = 0
    for x, y in zip(reversed(a), reversed(b), strict=False):
        if x != y:
            break
        n += 1
    return n


def token_span_mask(
    tokenizer, token_ids: Sequence[int], text: str, span: tuple[int, int] | None
) -> np.ndarray:
    """`[len(token_ids)]` bool: the tokens overlapping characters [start, end) of `text`.

    `text` must be `tokenizer.decode(token_ids, skip_special_tokens=True)` (the rollout's text).
    """
    n = len(token_ids)
    mask = np.zeros(n, bool)
    if span is None or n == 0:
        return mask
    s, e = span
    ids = list(token_ids)
    cache: dict[int, int] = {n: len(text)}

    def boundary(k: int) -> int:  # the character where token k starts (k = n: the end)
        if k not in cache:
            suffix = tokenizer.decode(ids[k:], skip_special_tokens=True)
            cache[k] = len(text) - _common_suffix_len(suffix, text)
        return cache[k]

    def first_at_or_after(limit: int, strict: bool) -> int:
        """Smallest k with boundary(k) > limit (strict) or >= limit: boundaries grow with k."""
        ok = (lambda k: boundary(k) > limit) if strict else (lambda k: boundary(k) >= limit)
        hi, step = n, 1  # ok(n) may be False only for limit >= len(text): then n is returned
        lo = n - step
        while lo > 0 and ok(lo):
            hi, step = lo, step * 2
            lo = n - step
        lo = max(lo, 0)
        if ok(lo):
            return lo
        while hi - lo > 1:  # ok(hi) or hi == n; not ok(lo)
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid
        return hi

    # Token i is in the span when b_{i+1} > s and b_i < e: i + 1 >= (first k with b_k > s) and
    # i < (first k with b_k >= e).
    first = first_at_or_after(s, strict=True) - 1
    stop = first_at_or_after(e, strict=False)
    mask[max(first, 0) : stop] = True
    return mask


def confidence_span_mask(
    tokenizer,
    tokens: np.ndarray,
    lengths: np.ndarray,
    texts: Sequence[str],
    tag: str = "confidence",
) -> np.ndarray:
    """`[R, C]` bool: the completion slots whose tokens overlap each row's confidence span.

    Args:
      tokens: `[R, C]` sampled ids; lengths: `[R]` real tokens per row.
      texts: the R decoded completions (`corea_jax.rl.rollout.decode_rows`).
    A row without a complete `<tag>...</tag>` has no span tokens.
    """
    tokens = np.asarray(tokens)
    mask = np.zeros(tokens.shape, bool)
    for r, text in enumerate(texts):
        row = tokens[r, : int(lengths[r])].tolist()
        mask[r, : len(row)] = token_span_mask(tokenizer, row, text, confidence_char_span(text, tag))
    return mask

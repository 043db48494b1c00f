"""The confidence span mask: the completion tokens overlapping the <confidence> span the parser
reads, whatever way the tokenizer cuts the tags, the digits or a UTF-8 character."""

import numpy as np
import pytest
from tiny_models import make_tokenizer

from corea_jax.rl.spans import confidence_char_span, confidence_span_mask, token_span_mask

EOS = 0


class ByteTokenizer:
    """Byte-level BPE in miniature: each id is a byte string, decode joins them and replaces
    invalid UTF-8, as HF's byte-level decoders do; id 0 is a special token (EOS)."""

    def __init__(self):
        self.pieces: list[bytes] = [b""]

    def ids(self, *pieces: bytes) -> list[int]:
        out = []
        for p in pieces:
            if p not in self.pieces:
                self.pieces.append(p)
            out.append(self.pieces.index(p))
        return out

    def decode(self, ids, skip_special_tokens=True):
        assert skip_special_tokens
        return b"".join(self.pieces[i] for i in ids if i != EOS).decode("utf-8", "replace")


def byte_overlap_truth(pieces: list[bytes], text: str) -> list[bool]:
    """Ground truth: a token is in the span when one of its bytes is."""
    s, e = confidence_char_span(text)
    s, e = len(text[:s].encode()), len(text[:e].encode())
    out, pos = [], 0
    for p in pieces:
        out.append(bool(p) and pos < e and pos + len(p) > s)
        pos += len(p)
    return out


CASES = {
    # Every tag and number its own token.
    "clean": [b"<answer>", b"4", b"</answer>", b"<confidence>", b"0.85", b"</confidence>"],
    # The tags cut into pieces, the digits one per token.
    "split_tags_and_digits": [
        b"<answer>4</answer>", b"<conf", b"idence", b">", b"0", b".", b"8", b"5", b"</", b"conf",
        b"idence>",
    ],
    # Tags merged with their neighbours: "</answer><" and "5</" and ">\n" are single tokens.
    "merged_with_neighbours": [
        b"<answer>4</answer", b"><", b"confidence>0.8", b"5</", b"confidence", b">\n",
    ],
    # An "e-acute" cut between two tokens right before the span, the second holding the "<";
    # full-width digits (3 bytes each) cut inside the span; an emoji cut after it.
    "partial_utf8": [
        b"<answer>4</answer>\xc3", b"\xa9<confidence>\xef\xbc", b"\x90.9</confidence>",
        b"\xf0\x9f", b"\x99\x82",
    ],
    # A partial character as the whole token just before the span and just after it.
    "lone_partial_bytes": [
        b"<answer>4</answer>", b"\xc3", b"\xa9", b"<confidence>0.5</confidence>", b"\xc3",
        b"\xa9",
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_mask_is_the_tokens_with_a_byte_in_the_span(name):
    tok = ByteTokenizer()
    pieces = CASES[name]
    ids = tok.ids(*pieces) + [EOS]
    text = tok.decode(ids)
    mask = token_span_mask(tok, ids, text, confidence_char_span(text))
    want = byte_overlap_truth(pieces, text) + [False]  # EOS decodes to nothing
    assert mask.tolist() == want
    assert mask.any()


def test_hand_mask_of_merged_tags():
    tok = ByteTokenizer()
    ids = tok.ids(*CASES["merged_with_neighbours"])
    text = tok.decode(ids)
    # "</answer" stays out; "><" holds the span's first "<"; ">\n" its last ">".
    assert token_span_mask(tok, ids, text, confidence_char_span(text)).tolist() == [
        False, True, True, True, True, True,
    ]  # fmt: skip


def test_the_last_complete_span_is_the_one_read():
    tok = ByteTokenizer()
    pieces = [b"<confidence>0.1</confidence>", b"<answer>4</answer>", b"<confidence>",
              b"0.7", b"</confidence>", b"<confidence>0.3"]  # fmt: skip
    ids = tok.ids(*pieces)
    text = tok.decode(ids)
    mask = token_span_mask(tok, ids, text, confidence_char_span(text))
    assert mask.tolist() == [False, False, True, True, True, False]


def test_no_complete_span_no_tokens():
    tok = ByteTokenizer()
    for pieces in ([b"<answer>4</answer>"], [b"<confidence>0.5"], [b"0.5</confidence>"]):
        ids = tok.ids(*pieces)
        text = tok.decode(ids)
        assert confidence_char_span(text) is None
        assert not token_span_mask(tok, ids, text, None).any()


def test_rows_are_masked_within_their_lengths():
    tok = ByteTokenizer()
    rows = [
        tok.ids(b"<answer>4</answer>", b"<confidence>", b"0.9", b"</confidence>") + [EOS],
        tok.ids(b"no tags"),
    ]
    c = 7
    tokens = np.full((2, c), EOS, np.int32)
    for r, ids in enumerate(rows):
        tokens[r, : len(ids)] = ids
    lengths = np.array([len(r) for r in rows])
    texts = [tok.decode(r) for r in rows]
    mask = confidence_span_mask(tok, tokens, lengths, texts)
    assert mask.shape == (2, c) and mask.dtype == bool
    np.testing.assert_array_equal(mask[0], [0, 1, 1, 1, 0, 0, 0])
    assert not mask[1].any()


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(make_tokenizer(tmp_path_factory.mktemp("tok")))


@pytest.mark.parametrize(
    "text",
    [
        # "><" is one token of this tokenizer: the span starts inside it.
        "<think>12 + 30 = 42</think><answer>42</answer><confidence>0.85</confidence>",
        # Byte tokens of multi-byte characters before, inside and after the span.
        "<answer>42</answer>é<confidence>０.9</confidence>🙂",
        "<think>t</think>\n<answer>42</answer>\n<confidence>1</confidence>\n",
    ],
)
def test_a_byte_level_bpe_tokenizer_agrees_with_its_offsets(hf_tokenizer, text):
    enc = hf_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"] + [hf_tokenizer.eos_token_id]
    decoded = hf_tokenizer.decode(ids, skip_special_tokens=True)
    assert decoded == text
    s, e = confidence_char_span(text)
    want = [a < e and b > s for a, b in enc["offset_mapping"]] + [False]
    mask = token_span_mask(hf_tokenizer, ids, decoded, (s, e))
    assert mask.tolist() == want
    # Tags and digits are cut into several tokens here, so the span is many tokens.
    assert mask.sum() >= 5

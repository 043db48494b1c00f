"""Completion text -> answer string, verbalized confidence and format flags (host side).

A completion is read once, here, and leaves as a `ParsedCompletion`;
`corea_jax.scoring.score.score_texts` turns many of them (graded) into arrays.

The default layout is RLCR's, the closest prior work (PAPER.md [open] 5):
`<think>...</think><answer>...</answer><confidence>0.85</confidence>`. Layouts are data:
`FORMATS` maps a name to a frozen `OutputFormat`, so a `\\boxed{}` answer for math prompts or a
bare letter for multiple choice is a different entry, not a branch in the parser.

Choices this module makes where the paper says nothing (each one a field of `OutputFormat` or a
parameter, so a config can change it):
- The last complete `<confidence>` span wins (PAPER.md), and so does the last `<answer>` span
  (or `\\boxed{}`) by default (`answer_pick="last"`; "first" is the other choice).
- A confidence is a plain decimal in [0, 1] (`0.85`, `.5`, `1`) or a percentage in [0, 100]
  (`85%`). Anything else (missing, `1.5`, `NaN`, words, several numbers, scientific notation) is
  invalid: flagged with a reason, never an exception. Invalid confidences become
  `invalid_confidence=0.0` in arrays (PAPER.md [open] 4: treated as 0, i.e. deferred).
- `format_ok` needs every required tag closed exactly once per opening, in the order
  think -> answer -> confidence, a non-empty answer and a valid confidence
  (`require_balanced=True`); only whitespace may surround the tags (`allow_outer_text=False`).
  `think_prefilled=True` is for prompts that already end with the opening `<think>`.
- Tags match case-insensitively and may carry spaces inside the angle brackets (`< answer >`).

Everything here is linear in the input length: tags are found with one regex scan and braces
are matched with one stack pass, so 1 MB of adversarial text costs milliseconds, not minutes.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

from corea_jax.errors import CoreaError


@dataclasses.dataclass(frozen=True)
class OutputFormat:
    """Where the answer and confidence live in a completion.

    Attributes:
      answer_source: key of `ANSWER_SOURCES`: "tag" (inside `<answer_tag>`), "boxed" (the last
        `\\boxed{}` anywhere), "tag_or_boxed" (the tag, else the last box).
      think_tag, answer_tag, confidence_tag: tag names; None means not required (a "boxed"
        layout has no answer tag).
      think_prefilled: the prompt ends with `<think>`, so the completion starts inside it.
      require_balanced: every opening tag of a required name needs its closing tag.
      allow_outer_text: text other than whitespace may stand before the first or after the
        last required tag.
      choice_letters: when set, the answer is reduced to one of these letters where one can be
        read ("(B) Paris" -> "B"); otherwise the raw answer is kept for the grader.
      answer_pick: "last" or "first": which answer tag (or box) counts when there are several.
        The confidence is always the last tag's (PAPER.md).
    """

    answer_source: str = "tag"
    think_tag: str | None = "think"
    answer_tag: str | None = "answer"
    confidence_tag: str | None = "confidence"
    think_prefilled: bool = False
    require_balanced: bool = True
    allow_outer_text: bool = False
    choice_letters: str | None = None
    answer_pick: str = "last"

    def __post_init__(self):
        if self.answer_source not in ANSWER_SOURCES:
            raise CoreaError(
                f"OutputFormat.answer_source={self.answer_source!r}: expected one of "
                f"{sorted(ANSWER_SOURCES)}"
            )
        if self.answer_pick not in ("last", "first"):
            raise CoreaError(f"OutputFormat.answer_pick={self.answer_pick!r}: 'last' or 'first'")
        if self.answer_source != "boxed" and self.answer_tag is None:
            raise CoreaError(
                f"OutputFormat.answer_tag: needed by answer_source={self.answer_source!r}"
            )
        for field in ("think_tag", "answer_tag", "confidence_tag"):
            name = getattr(self, field)
            if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
                raise CoreaError(f"OutputFormat.{field}={name!r}: not a valid tag name")


@dataclasses.dataclass(frozen=True)
class ParsedCompletion:
    """One completion, read.

    Attributes:
      answer: the answer text (stripped), or None when there is none.
      confidence: the stated confidence in [0, 1], or None when missing or invalid.
      format_ok: the layout is complete (see the module docstring) and the confidence valid.
      reason: "" when `format_ok`, else the first failed check, for logs and the CLI.
      confidence_reason: "" when the confidence is valid, else why not.
    """

    answer: str | None
    confidence: float | None
    format_ok: bool
    reason: str = ""
    confidence_reason: str = ""

    @property
    def confidence_valid(self) -> bool:
        return self.confidence is not None


# --- confidence -----------------------------------------------------------------------------

_CONFIDENCE_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(%?)")
_ANY_NUMBER_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_MAX_CONFIDENCE_CHARS = 64


def parse_confidence(text: str | None) -> tuple[float | None, str]:
    """A confidence string -> (value in [0, 1] or None, reason it is invalid or "").

    Accepts `0.85`, `.85`, `1`, `1.0`, `85%`, `85.5 %` (surrounding whitespace ignored).
    Rejects with a reason: None/empty (missing), out of range (`1.5`, `120%`), several numbers,
    anything that is not a plain decimal (`NaN`, `inf`, `-0.2`, `1e-1`, words).
    """
    if text is None:
        return None, "missing confidence"
    s = text.strip()
    if not s:
        return None, "empty confidence"
    if len(s) > _MAX_CONFIDENCE_CHARS:
        return None, "confidence is not a number"
    m = _CONFIDENCE_RE.fullmatch(s)
    if m is None:
        if len(_ANY_NUMBER_RE.findall(s)) > 1:
            return None, f"several numbers in confidence {s!r}"
        return None, f"confidence is not a number: {s!r}"
    value = float(m.group(1))
    if m.group(2):
        value /= 100.0
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        return None, f"confidence out of [0, 1]: {s!r}"
    return value, ""


# --- braces and boxes -----------------------------------------------------------------------

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_RE = re.compile(r"(?<!\\)[{}]")


def _closing_brace(text: str, open_pos: int) -> int | None:
    """Index of the `}` closing the `{` at `open_pos`, or None; escaped braces are skipped."""
    depth = 0
    for m in _BRACE_RE.finditer(text, open_pos):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return m.start()
    return None


def _brace_pairs(text: str) -> dict[int, int]:
    """Every balanced `{` position -> its `}` position, in one stack pass."""
    pairs, stack = {}, []
    for m in _BRACE_RE.finditer(text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            pairs[stack.pop()] = m.start()
    return pairs


def extract_boxed(text: str, last: bool = True) -> str | None:
    """The content of the last (or first) balanced `\\boxed{...}` or `\\fbox{...}`, or None.

    That box is tried with a forward scan first (the common case); only when it is unbalanced
    does one linear pass over all braces pick the nearest balanced box.
    """
    starts = [m.end() - 1 for m in _BOXED_RE.finditer(text)]
    if not starts:
        return None
    if not last:
        starts.reverse()
    close = _closing_brace(text, starts[-1])
    if close is not None:
        return text[starts[-1] + 1 : close]
    pairs = _brace_pairs(text)
    for start in reversed(starts):
        if start in pairs:
            return text[start + 1 : pairs[start]]
    return None


# --- multiple choice and GSM8K ---------------------------------------------------------------

_TEXT_WRAP_RE = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|textrm|mbox)\s*\{(.*)\}$", re.S)


def _unwrap_text(s: str) -> str:
    s = s.strip().strip("$").strip()
    for _ in range(3):
        m = _TEXT_WRAP_RE.match(s)
        if m is None:
            break
        s = m.group(1).strip()
    return s


def extract_choice_letter(text: str | None, letters: str = "ABCDE") -> str | None:
    """A multiple-choice letter from an answer, or None.

    Reads, in order: a bare letter with optional brackets or period (`B`, `(B)`, `B.`,
    `\\boxed{B}`, `\\text{B}`); a letter leading an option (`(B) Paris`, `B. Paris`,
    `B) Paris`); a letter after "answer/option/choice (is)". Letters outside `letters` are
    ignored. A lone lowercase letter counts (`b` -> `B`); inside prose only capitals do.
    """
    if text is None:
        return None
    s = text.strip()
    boxed = extract_boxed(s)
    if boxed is not None:
        s = boxed
    s = _unwrap_text(s)
    if not s or not letters:
        return None
    cls = "[" + re.escape(letters) + "]"
    m = re.fullmatch(r"\(?\s*(" + cls + r")\s*\)?\s*[.:)]?", s, re.I)
    if m is not None:
        return m.group(1).upper()
    m = re.match(r"[(\[]?\s*(" + cls + r")\s*(?:[).:\]]|\s-)\s*\S", s)
    if m is not None:
        return m.group(1)
    hits = re.findall(
        r"(?i:answer|option|choice)\s*(?:(?i:is)\s*)?:?\s*[(\[]?\s*(" + cls + r")\b", s[-4000:]
    )
    return hits[-1] if hits else None


_HASH_ANSWER_RE = re.compile(r"####\s*([^\n]*)")


def extract_hash_answer(text: str | None) -> str | None:
    """The answer after the last `####` marker (GSM8K style), or None."""
    if text is None:
        return None
    hits = _HASH_ANSWER_RE.findall(text)
    if not hits:
        return None
    answer = hits[-1].strip()
    return answer or None


# --- tags -----------------------------------------------------------------------------------

# Possessive quantifiers: no backtracking, so `<` followed by a megabyte of spaces stays linear.
_TAG_RE = re.compile(r"<\s*+(/?)\s*+([A-Za-z_][A-Za-z0-9_-]*+)\s*+>")


@dataclasses.dataclass
class _TagScan:
    """Per tag name: complete spans (open_start, content_start, content_end, close_end),
    and counts of opening/closing tags."""

    spans: dict[str, list[tuple[int, int, int, int]]]
    opens: dict[str, int]
    closes: dict[str, int]
    nested: set[str]


def _scan_tags(text: str, names: Sequence[str]) -> _TagScan:
    wanted = {n.lower(): n for n in names}
    spans = {n: [] for n in names}
    opens = dict.fromkeys(names, 0)
    closes = dict.fromkeys(names, 0)
    nested: set[str] = set()
    open_at: dict[str, tuple[int, int]] = {}
    for m in _TAG_RE.finditer(text):
        name = wanted.get(m.group(2).lower())
        if name is None:
            continue
        if not m.group(1):
            opens[name] += 1
            if name in open_at:
                nested.add(name)
            open_at[name] = (m.start(), m.end())
        else:
            closes[name] += 1
            if name in open_at:
                start, content_start = open_at.pop(name)
                spans[name].append((start, content_start, m.start(), m.end()))
    return _TagScan(spans, opens, closes, nested)


def _answer_from_tag(text, scan, fmt):
    spans = scan.spans[fmt.answer_tag]
    if not spans:
        return None
    _, start, end, _ = spans[-1] if fmt.answer_pick == "last" else spans[0]
    return text[start:end]


def _answer_from_boxed(text, scan, fmt):
    del scan
    return extract_boxed(text, last=fmt.answer_pick == "last")


def _answer_from_tag_or_boxed(text, scan, fmt):
    answer = _answer_from_tag(text, scan, fmt)
    if answer is not None and answer.strip():
        return answer
    return extract_boxed(text, last=fmt.answer_pick == "last")


ANSWER_SOURCES = {
    "tag": _answer_from_tag,
    "boxed": _answer_from_boxed,
    "tag_or_boxed": _answer_from_tag_or_boxed,
}


def _structure_problem(text: str, scan: _TagScan, fmt: OutputFormat) -> str:
    """The first thing wrong with the layout, or ""."""
    required = [t for t in (fmt.think_tag, fmt.answer_tag, fmt.confidence_tag) if t is not None]
    if fmt.answer_source == "boxed":
        required = [t for t in required if t != fmt.answer_tag]
    last = []
    for name in required:
        if not scan.spans[name]:
            return f"missing <{name}>...</{name}>"
        if fmt.require_balanced and (scan.opens[name] != scan.closes[name] or name in scan.nested):
            return f"unbalanced <{name}> tags"
        last.append(scan.spans[name][-1])
    for (_, _, _, prev_end), (start, _, _, _), a, b in zip(
        last, last[1:], required, required[1:], strict=False
    ):
        if start < prev_end:
            return f"<{b}> before the end of <{a}>"
    if last and not fmt.allow_outer_text:
        first_start = scan.spans[required[0]][0][0]
        if text[:first_start].strip() or text[last[-1][3] :].strip():
            return "text outside the tags"
    return ""


def parse_completion(text: str, fmt: OutputFormat | None = None) -> ParsedCompletion:
    """One completion -> `ParsedCompletion`. Never raises on any `str` input."""
    fmt = DEFAULT_FORMAT if fmt is None else fmt
    if not isinstance(text, str):
        raise CoreaError(f"completion: expected a string, got {type(text).__name__}")
    if fmt.think_prefilled and fmt.think_tag is not None:
        text = f"<{fmt.think_tag}>" + text
    names = [t for t in (fmt.think_tag, fmt.answer_tag, fmt.confidence_tag) if t is not None]
    scan = _scan_tags(text, names)

    answer = ANSWER_SOURCES[fmt.answer_source](text, scan, fmt)
    if answer is not None:
        answer = answer.strip()
        if fmt.choice_letters:
            answer = extract_choice_letter(answer, fmt.choice_letters) or answer
        answer = answer or None

    conf_text = None
    if fmt.confidence_tag is not None and scan.spans[fmt.confidence_tag]:
        _, a, b, _ = scan.spans[fmt.confidence_tag][-1]
        conf_text = text[a:b]
    confidence, confidence_reason = parse_confidence(conf_text)

    reason = _structure_problem(text, scan, fmt)
    if not reason and answer is None:
        reason = "missing \\boxed{} answer" if fmt.answer_source == "boxed" else "empty answer"
    if not reason and confidence is None:
        reason = confidence_reason
    return ParsedCompletion(answer, confidence, not reason, reason, confidence_reason)


DEFAULT_FORMAT = OutputFormat()

FORMATS = {
    # RLCR layout (the default): think, answer, confidence tags.
    "tags": DEFAULT_FORMAT,
    # Math prompts that ask for \boxed{}: free reasoning, the last box is the answer, and a
    # confidence tag.
    "boxed": OutputFormat(
        answer_source="boxed", think_tag=None, answer_tag=None, allow_outer_text=True
    ),
    # Multiple choice: the tag layout, the answer reduced to a letter A-J where one is readable.
    "choice": OutputFormat(choice_letters="ABCDEFGHIJ"),
}


def get_format(name: str) -> OutputFormat:
    """`FORMATS[name]`, with an error that lists the known names."""
    if name not in FORMATS:
        raise CoreaError(f"output format {name!r}: expected one of {sorted(FORMATS)}")
    return FORMATS[name]

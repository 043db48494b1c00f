"""Answer grading: is a model's answer equivalent to the reference ("gold") answer?

`grade_answer(gold, answer, kind, choices)` returns a `Grade`. Kinds are data: `GRADERS` maps
"math", "numeric", "choice" and "yesno" to small functions, and "auto" picks one from the gold
(`resolve_kind`). Batches go through `corea_jax.scoring.grading_workers.Grader`, which runs
this module in worker processes.

- math: two cheap exact paths first (the answers are the same string after formatting-only
  normalisation; or both are plain numbers), then a screen that can only rule an answer out
  (both sides closed-form constants such as `3\\sqrt{13}` and `13\\sqrt{3}` whose float values
  differ by more than rounding explains; it agrees with math-verify on every real pair tested),
  then math-verify with the gold parsed first, as its `verify(gold, target)` expects. Gold
  parses are cached per process. The cheap paths decide about 90% of MATH-500-style answers
  without math-verify (benchmarks/grading.py prints the split).
- numeric (GSM8K `####`, AIME's leading zeros, AMC's floats): numbers read with a regex into
  `fractions.Fraction`, thousands commas, currency, `%` and trailing unit words dropped; an
  answer that is not a plain number (`\\sqrt{4}`) falls back to math-verify.
- choice (CommonsenseQA, GPQA, DeepMath's lettered items): letters compared; with `choices`, an
  answer that spells out an option's text counts as that option.
- yesno (DeepMath's Yes/No/True/False): yes == true, no == false, case-insensitive.

Safety. This code runs on untrusted model output. It never calls `eval` or `sympify` itself:
numbers are read by regex into `Fraction` with bounded lengths, and the only path from text to
sympy is math-verify's parser (its LaTeX grammar and its guarded expression parser). That path can
still take unbounded time or memory (`10^10^10^10`, a 100k-character expression), so:
- answers longer than `max_answer_chars` are not parsed at all (graded wrong, method
  "too_long");
- each grade runs under a soft time limit of `time_limit_s` (SIGALRM via `setitimer`; works on
  the main thread only, which is where `Grader` workers call it; math-verify's own signal
  timeouts are switched off because nested alarms would cancel each other);
- `Grader` adds the hard limits: a worker that overruns is killed and replaced, and one that
  dies (memory limit, crash) costs only the answer it was grading.

Defaults where nothing is prescribed (all fields of `GradingConfig`): `time_limit_s=5.0`
(math-verify's own default), `max_answer_chars=2000` (the longest gold answer in the shipped
data is under 500), `float_rounding=6` (math-verify's default: a repeating decimal such as
1/3 equals 0.333333; two finite decimals must match exactly), `choice_letters="ABCDEFGHIJ"`,
and `memory_limit_mb=2048` per worker process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import re
import signal
import threading
from collections.abc import Sequence
from fractions import Fraction
from typing import NamedTuple

from corea_jax.errors import CoreaError
from corea_jax.scoring.parsing import extract_boxed, extract_choice_letter, extract_hash_answer

KINDS = ("auto", "math", "numeric", "choice", "yesno")


@dataclasses.dataclass(frozen=True)
class GradingConfig:
    """Limits and tolerances of grading; see the module docstring for why each default."""

    time_limit_s: float = 5.0
    max_answer_chars: int | None = 2000
    float_rounding: int = 6
    choice_letters: str = "ABCDEFGHIJ"
    memory_limit_mb: int | None = 2048

    def __post_init__(self):
        if not self.time_limit_s > 0:
            raise CoreaError(f"GradingConfig.time_limit_s={self.time_limit_s}: must be > 0")


class Grade(NamedTuple):
    """The verdict on one answer.

    Attributes:
      correct: the answer is equivalent to the gold one.
      method: what decided: "exact", "numeric", "constant", "math_verify", "choice", "yesno",
        or why nothing could: "no_answer", "too_long", "timeout", "crashed", "error".
      reason: a short explanation when `method` says the answer could not be graded.
    """

    correct: bool
    method: str
    reason: str = ""


class GradeTask(NamedTuple):
    """One answer to grade. `choices` is a tuple of (label, text) pairs, or None."""

    gold: str
    answer: str | None
    kind: str = "auto"
    choices: tuple[tuple[str, str], ...] | None = None


# --- normalisation -------------------------------------------------------------------------

_LEAD_RE = re.compile(r"^(?:(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*:?|####)\s*", re.IGNORECASE)
_SPACING_RE = re.compile(r"\\[,;:! ]|\\q?quad|~")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])")
_FRAC_RE = re.compile(r"\\[dt]frac(?![A-Za-z])")
_WS_RE = re.compile(r"\s+")


def strip_answer(text: str) -> str:
    """The answer's core: the last `\\boxed{}` content if any, without math delimiters,
    currency escapes, a leading "The answer is"/"####", or a trailing period."""
    s = text.strip()
    boxed = extract_boxed(s)
    if boxed is not None:
        s = boxed
    s = s.replace("\\$", "").replace("$", "")
    s = s.strip()
    for opener, closer in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(opener) and s.endswith(closer):
            s = s[len(opener) : -len(closer)]
    s = _LEAD_RE.sub("", s.strip())
    s = s.strip()
    while s.endswith(".") and not s.endswith(".."):
        s = s[:-1].rstrip()
    return s


def exact_key(text: str) -> str:
    """A formatting-only normal form: equal keys mean equal answers (never the converse)."""
    s = _FRAC_RE.sub(r"\\frac", strip_answer(text))
    s = _LEFT_RIGHT_RE.sub("", s)
    s = _SPACING_RE.sub("", s)
    return _WS_RE.sub("", s)


_NUMERAL = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+"
_NUMERAL_RE = re.compile(_NUMERAL)
_FRACTION_RE = re.compile(r"([+-]?)\\frac\{([^{}]{1,60})\}\{([^{}]{1,60})\}")
_SLASH_RE = re.compile(rf"({_NUMERAL})\s*/\s*({_NUMERAL})")
_UNIT_TEXT_RE = re.compile(r"\s*\\(?:text|mbox|textrm|mathrm)\s*\{[^{}]{0,40}\}\s*$")
_UNIT_WORD_RE = re.compile(r"(?:\s+|(?<=\d))[A-Za-z]{2,20}(?:\s*\^\s*\{?[23]\}?)?$")
_NOT_UNITS = frozenset({"pi", "sqrt", "cdot", "times", "infty", "frac", "ln", "log", "exp"})
_DEGREE_RE = re.compile(r"\s*(?:\^\s*\{?\\circ\}?|°)\s*$")
_MAX_NUMBER_CHARS = 80


def _plain_number(s: str) -> Fraction | None:
    if len(s) > _MAX_NUMBER_CHARS or _NUMERAL_RE.fullmatch(s) is None:
        return None
    return Fraction(s.replace(",", ""))


_ASSIGNMENT_RE = re.compile(r"^[A-Za-z](?:_\{?[A-Za-z0-9]{1,8}\}?)?\s*=(?!.*=)\s*")
_WHOLE_TEXT_RE = re.compile(r"^\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}$")


def value_text(text: str) -> str:
    """`strip_answer`, then a lone `\\text{...}` unwrapped and a leading `x =` dropped (as
    math-verify compares `x = 5` with `5` when the other side is not an equation)."""
    s = strip_answer(text)
    if (m := _WHOLE_TEXT_RE.match(s)) is not None:
        s = m.group(1).strip()
    return _ASSIGNMENT_RE.sub("", s)


def parse_number(text: str | None) -> Fraction | None:
    """A plain number in `text` as an exact `Fraction`, or None when it is anything else.

    Reads `72`, `-3.5`, `025`, `1,450,000`, `.5`, `\\$18.90`, `85\\%`, `12 cm`,
    `5\\text{ cents}`, `90^\\circ`, `\\frac{3}{4}`, `-\\dfrac{1}{2}`, `3/4`, `x = 5`,
    `\\text{5}` and `#### 72`. Never evaluates anything: no exponents, no scientific
    notation, bounded length.
    """
    if text is None:
        return None
    s = value_text(text)
    if len(s) > 4 * _MAX_NUMBER_CHARS:
        return None
    s = _FRAC_RE.sub(r"\\frac", s)
    s = _SPACING_RE.sub("", s).strip()
    s = _UNIT_TEXT_RE.sub("", s)
    s = _DEGREE_RE.sub("", s)
    m = _UNIT_WORD_RE.search(s)
    if m is not None and m.group().strip().split("^")[0].strip().lower() not in _NOT_UNITS:
        s = s[: m.start()]
    s = s.strip().removesuffix("\\%").removesuffix("%").strip()
    s = s.removeprefix("£").removeprefix("€").strip()
    if (value := _plain_number(s)) is not None:
        return value
    if (m := _FRACTION_RE.fullmatch(s)) or (m := _SLASH_RE.fullmatch(s)):
        parts = m.groups()[-2:]
        num, den = (_plain_number(p.strip()) for p in parts)
        if num is None or den is None or den == 0:
            return None
        value = num / den
        return -value if m.re is _FRACTION_RE and m.group(1) == "-" else value
    return None


def _terminates(x: Fraction) -> bool:
    """x has a finite decimal expansion (its denominator has no prime factor but 2 and 5)."""
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def numbers_equal(a: Fraction, b: Fraction, float_rounding: int = 6) -> bool:
    """Exact equality; or, when one side has no finite decimal expansion (`1/3`), equality
    after rounding both to `float_rounding` decimals (`1/3` vs `0.333333`). Two finite decimals
    must match exactly (`0.0000001` is not `0.0000002`)."""
    if a == b:
        return True
    if _terminates(a) and _terminates(b):
        return False
    return round(a, float_rounding) == round(b, float_rounding)


_YES = frozenset({"yes", "true"})
_NO = frozenset({"no", "false"})
_YES_NO_RE = re.compile(r"(yes|no|true|false)\b", re.IGNORECASE)
_WRAP_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textrm|mbox)\s*\{([^{}]*)\}")


def parse_yes_no(text: str | None) -> bool | None:
    """`Yes`/`True` -> True, `No`/`False` -> False (leading word, any case), else None."""
    if text is None:
        return None
    s = _WRAP_RE.sub(r"\1", strip_answer(text)).strip().lstrip("*(").strip()
    m = _YES_NO_RE.match(s)
    if m is None:
        return None
    return m.group(1).lower() in _YES


# --- a numeric screen for closed-form constants ----------------------------------------------

_TOKEN_RE = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+|\\[A-Za-z]+|[-+*/^(){}\[\]])")
_COMMANDS = {"\\frac", "\\dfrac", "\\tfrac", "\\sqrt", "\\pi", "\\cdot", "\\times"}
_MAX_TOKENS, _MAX_EXPONENT = 200, 1000
_FRACS = ("\\frac", "\\dfrac", "\\tfrac")
_IMPLICIT_STARTS = ("(", "\\sqrt", "\\pi", *_FRACS)


class _Unsupported(Exception):
    """The text is outside the screen's small grammar: leave it to math-verify."""


class _ConstantParser:
    """Recursive descent over: numbers, + - * / ^, \\frac, \\sqrt (with an index), \\pi,
    \\cdot, \\times, implicit products (`2\\sqrt{3}`, `3\\pi`), braces and brackets.
    Arithmetic in floats; big exponents, complex results and anything else raise
    `_Unsupported`. No eval: the grammar is the whole language."""

    def __init__(self, tokens):
        self.tokens, self.i = tokens, 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected=None):
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise _Unsupported()
        self.i += 1
        return tok

    def expr(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self):
        value = self.signed()
        while True:
            tok = self.peek()
            if tok in ("*", "\\cdot", "\\times"):
                self.take()
                value *= self.signed()
            elif tok == "/":
                self.take()
                value = _divide(value, self.signed())
            elif tok in _IMPLICIT_STARTS:
                # An implicit product, except number-number (`2 3`) and number-fraction
                # (`1\\frac{4}{5}` is a mixed number to math-verify): those are left to it.
                if tok in _FRACS and self.tokens[self.i - 1][0].isdigit():
                    raise _Unsupported()
                value *= self.power()
            else:
                return value

    def signed(self):
        if self.peek() in ("+", "-"):
            sign = -1.0 if self.take() == "-" else 1.0
            return sign * self.signed()
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        exponent = self.argument()
        if abs(exponent) > _MAX_EXPONENT or (base < 0 and exponent != int(exponent)):
            raise _Unsupported()
        try:
            return base**exponent
        except (OverflowError, ZeroDivisionError):
            raise _Unsupported() from None

    def argument(self):
        """A macro argument: `{expr}`, or a single character (`\\frac12`, `2^3`)."""
        tok = self.peek()
        if tok == "{":
            self.take()
            value = self.expr()
            self.take("}")
            return value
        if tok is not None and tok[0].isdigit():
            self.take()
            if len(tok) > 1:  # `\\frac12`: one digit is the argument, the rest comes next
                self.tokens.insert(self.i, tok[1:])
            return float(tok[0])
        if tok == "\\pi":
            self.take()
            return math.pi
        raise _Unsupported()

    def atom(self):
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return float(tok)
        if tok == "\\pi":
            return math.pi
        if tok in ("(", "{"):
            value = self.expr()
            self.take(")" if tok == "(" else "}")
            return value
        if tok in _FRACS:
            num = self.argument()
            return _divide(num, self.argument())
        if tok == "\\sqrt":
            index = 2.0
            if self.peek() == "[":
                self.take()
                index = self.expr()
                self.take("]")
            radicand = self.argument()
            if radicand < 0 or index < 1 or index != int(index):
                raise _Unsupported()
            return radicand ** (1.0 / index)
        raise _Unsupported()


def _divide(a, b):
    if b == 0:
        raise _Unsupported()
    return a / b


def constant_value(text: str) -> float | None:
    """The value of a closed-form constant (`\\frac{3\\sqrt{3}}{4}`, `2^{10}`, `3\\pi`), or
    None when the text uses anything outside the small grammar of `_ConstantParser`."""
    s = _LEFT_RIGHT_RE.sub("", _SPACING_RE.sub(" ", value_text(text)))
    tokens, pos = [], 0
    while pos < len(s):
        m = _TOKEN_RE.match(s, pos)
        if m is None:
            if s[pos:].strip():
                return None
            break
        tokens.append(m.group(1))
        pos = m.end()
        if len(tokens) > _MAX_TOKENS:
            return None
    if not tokens or any(t.startswith("\\") and t not in _COMMANDS for t in tokens):
        return None
    parser = _ConstantParser(tokens)
    try:
        value = parser.expr()
    except (_Unsupported, RecursionError, OverflowError, ValueError):
        return None
    if parser.peek() is not None or not math.isfinite(value):
        return None
    return value


def clearly_different(a: float, b: float, float_rounding: int = 6) -> bool:
    """Two constants differ by more than rounding to `float_rounding` decimals (math-verify's
    tolerance for decimals) or float error could explain."""
    return abs(a - b) > 2 * 10.0**-float_rounding + 1e-9 * max(abs(a), abs(b))


# --- kinds ---------------------------------------------------------------------------------


def resolve_kind(gold: str, kind: str = "auto", choices=None) -> str:
    """The grader for `kind`; "auto" reads it off the gold: options given or a lone capital
    A-J -> choice; Yes/No/True/False -> yesno; a plain number -> numeric; else math."""
    if kind != "auto":
        if kind not in GRADERS:
            raise CoreaError(f"kind={kind!r}: expected one of {list(KINDS)}")
        return kind
    if choices:
        return "choice"
    core = strip_answer(gold)
    if re.fullmatch(r"\(?[A-J]\)?", core):
        return "choice"
    if core.lower() in _YES | _NO:
        return "yesno"
    if parse_number(gold) is not None:
        return "numeric"
    return "math"


@functools.cache
def _math_verify():
    """math-verify, imported on first use (it pulls in sympy, about a second). Its warning that
    its own timeouts are off is silenced: `soft_time_limit` and `Grader` replace them."""
    import math_verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return math_verify


def _math_verify_parse(text: str):
    mv = _math_verify()
    configs = [mv.LatexExtractionConfig(), mv.ExprExtractionConfig()]
    parse = mv.parse
    core = strip_answer(text)
    parsed = parse("\\boxed{" + core + "}", configs, parsing_timeout=None) if core else []
    if not parsed:
        parsed = parse(text, configs, parsing_timeout=None)
    return parsed


@functools.lru_cache(maxsize=8192)
def _constant_value(gold: str) -> float | None:
    return constant_value(gold)


@functools.lru_cache(maxsize=8192)
def _parse_gold(gold: str):
    return _math_verify_parse(gold)


def _grade_math(gold, answer, choices, options):
    del choices
    if exact_key(gold) == exact_key(answer):
        return Grade(True, "exact")
    g, a = parse_number(gold), parse_number(answer)
    if g is not None and a is not None:
        return Grade(numbers_equal(g, a, options.float_rounding), "numeric")
    g, a = _constant_value(gold), constant_value(answer)
    if g is not None and a is not None and clearly_different(g, a, options.float_rounding):
        return Grade(False, "constant")
    gold_parsed = _parse_gold(gold)
    if not gold_parsed:
        return Grade(False, "math_verify", "gold answer did not parse")
    answer_parsed = _math_verify_parse(answer)
    ok = _math_verify().verify(
        gold_parsed, answer_parsed, float_rounding=options.float_rounding, timeout_seconds=None
    )
    return Grade(bool(ok), "math_verify")


def _grade_numeric(gold, answer, choices, options):
    a = parse_number(answer)
    if a is not None:
        return Grade(numbers_equal(parse_number(gold), a, options.float_rounding), "numeric")
    return _grade_math(gold, answer, choices, options)


def choice_labels(choices, letters: str = "ABCDEFGHIJ") -> str:
    """The option letters: the one-character labels of `choices`, else `letters`."""
    if not choices:
        return letters
    return "".join(label for label, _ in choices if len(label) == 1)


def _grade_choice(gold, answer, choices, options):
    letters = choice_labels(choices, options.choice_letters)
    want = extract_choice_letter(gold, letters)
    got = extract_choice_letter(answer, letters)
    if got is None and choices:
        # The option's text instead of its letter. Options may repeat a text (CommonsenseQA
        # does): the answer names each of them, so it is right if one is the gold option.
        text = _WS_RE.sub(" ", _WRAP_RE.sub(r"\1", strip_answer(answer))).strip().casefold()
        named = {lab for lab, t in choices if _WS_RE.sub(" ", t).strip().casefold() == text}
        if named:
            return Grade(want in named, "choice")
    if got is None:
        return Grade(False, "choice", "no option letter in the answer")
    return Grade(got == want, "choice")


def _grade_yes_no(gold, answer, choices, options):
    del choices, options
    got = parse_yes_no(answer)
    if got is None:
        return Grade(False, "yesno", "no yes/no in the answer")
    return Grade(got == parse_yes_no(gold), "yesno")


GRADERS = {
    "math": _grade_math,
    "numeric": _grade_numeric,
    "choice": _grade_choice,
    "yesno": _grade_yes_no,
}


# --- the entry point -----------------------------------------------------------------------


class GradeTimeout(BaseException):
    """Raised by the soft time limit; a BaseException so library `except Exception` blocks
    (math-verify has several) cannot swallow it."""


@contextlib.contextmanager
def soft_time_limit(seconds: float):
    """Raise `GradeTimeout` in this thread after `seconds` (SIGALRM). A no-op off the main
    thread, where signals cannot be delivered; `Grader` workers always run on it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise GradeTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def normalize_choices(choices) -> tuple[tuple[str, str], ...] | None:
    """Options as (label, text) pairs from a list of texts (labelled A, B, ...), a list of
    `{"label", "text"}` objects (CommonsenseQA) or a `{label: text}` dict."""
    if choices is None:
        return None
    if isinstance(choices, dict):
        pairs = list(choices.items())
    elif isinstance(choices, (list, tuple)):
        pairs = []
        for i, c in enumerate(choices):
            if isinstance(c, str):
                pairs.append((chr(ord("A") + i), c))
            elif isinstance(c, dict) and "label" in c and "text" in c:
                pairs.append((c["label"], c["text"]))
            elif isinstance(c, (list, tuple)) and len(c) == 2:
                pairs.append((c[0], c[1]))
            else:
                raise CoreaError(f"choices[{i}]: expected a string or a {{label, text}} object")
    else:
        raise CoreaError("choices: expected a list or an object of label -> text")
    if not all(isinstance(lab, str) and isinstance(t, str) for lab, t in pairs):
        raise CoreaError("choices: labels and texts must be strings")
    return tuple(pairs)


def check_task(gold, answer, kind="auto", choices=None, options=None) -> str:
    """The grader kind for this task; raises `CoreaError` when the gold answer, kind or options
    are unusable (the caller's data is wrong, not the model)."""
    options = GradingConfig() if options is None else options
    if not isinstance(gold, str):
        raise CoreaError(f"gold answer: expected a string, got {type(gold).__name__}")
    if answer is not None and not isinstance(answer, str):
        raise CoreaError(f"answer: expected a string or null, got {type(answer).__name__}")
    kind = resolve_kind(gold, kind, choices)
    if kind == "numeric" and parse_number(gold) is None:
        raise CoreaError(f"gold answer {gold[:60]!r} is not a number (kind=numeric)")
    if kind == "yesno" and parse_yes_no(gold) is None:
        raise CoreaError(f"gold answer {gold[:60]!r} is not yes/no/true/false (kind=yesno)")
    if kind == "choice":
        letters = choice_labels(choices, options.choice_letters)
        if extract_choice_letter(gold, letters) is None:
            raise CoreaError(f"gold answer {gold[:60]!r} is not one of the options {letters!r}")
    return kind


def grade_answer(
    gold: str,
    answer: str | None,
    kind: str = "auto",
    choices: Sequence | None = None,
    options: GradingConfig | None = None,
) -> Grade:
    """Grade one answer in this process, under the soft time limit.

    A bad gold answer or kind raises `CoreaError` (a caller's mistake); anything that goes
    wrong with the model's answer is a wrong `Grade` with a reason, never an exception.
    """
    options = GradingConfig() if options is None else options
    choices = normalize_choices(choices)
    kind = check_task(gold, answer, kind, choices, options)
    if answer is None or not answer.strip():
        return Grade(False, "no_answer", "no answer")
    if options.max_answer_chars is not None and len(answer) > options.max_answer_chars:
        return Grade(False, "too_long", f"answer longer than {options.max_answer_chars} chars")
    if kind == "numeric" and extract_hash_answer(answer) is not None:
        answer = extract_hash_answer(answer)
    try:
        with soft_time_limit(options.time_limit_s):
            return GRADERS[kind](gold, answer, choices, options)
    except GradeTimeout:
        return Grade(False, "timeout", f"grading took over {options.time_limit_s:g} s")
    except CoreaError:
        raise
    except Exception as e:  # a model's answer that breaks the grader is a wrong answer
        return Grade(False, "error", f"{type(e).__name__} while grading")


def warm_up() -> None:
    """Import math-verify and run its parser once, so a fresh worker's first answer is fast."""
    _math_verify()
    grade_answer("\\frac{1}{2}", "\\boxed{0.5}", "math")
    grade_answer("x^2+1", "1+x^2", "math")

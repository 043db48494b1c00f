"""A synthetic reasoning task: chained arithmetic with a visible difficulty dial.

Used by offline tests and the demo, where a tiny model trained on a CPU must (a) learn to solve the
easy problems, (b) fail on some hard ones, and (c) be able to tell them apart, so that a
calibration reward has something to calibrate. A problem starts from a number and applies
`steps` operations, each with an operand of exactly `digits` digits; both numbers are written at
the start of the question, so difficulty is visible to the model:

    [steps 2, digits 2] What is 34 + 57 - 12?                                 (style "arithmetic")
    [steps 2, digits 2] Ann has 34 coins. Ann gets 57 more. Ann gives away 12.
        How many coins does Ann have?                                          (style "word")

The reference completion for supervised warm-up works left to right, one equation per step, in
the project's output format:

    <think>34 + 57 = 91. 91 - 12 = 79.</think><answer>79</answer><confidence>0.90</confidence>

Its stated confidence is a parameter (`warmup_confidence`: the demo warms up with a high value on
half the traces and a uniform two-decimal one on the others, so the warm model states varied
values and is over-confident on average, as real SLMs are). The vocabulary is small and regular on
purpose (digits, operators, a few fixed words) so a byte-level BPE model can learn it on a CPU in
minutes.

Defaults the paper does not fix (it has no synthetic task), all fields of `SyntheticTask`:
  - steps 1-3 and digits 1-3, levels visited in turn so each split is balanced across levels;
  - operations "+" and "-"; a "-" that would go below zero becomes "+" (`allow_negative=False`),
    keeping every number a plain non-negative integer;
  - operands of d digits are drawn uniformly from [10^(d-1), 10^d - 1] (1-digit operands: 1-9);
  - with "*" in `ops`, arithmetic questions bracket what came before ("(3 + 4) * 5"), because the
    trace always works left to right;
  - splits train / calibration / test take 80 / 10 / 10 % of all possible problems.

Splits never overlap: every possible problem belongs to exactly one split, chosen by
sha256(f"{seed}|{expression}") where the expression ignores the surface style, so the same sum
asked as a word problem cannot cross splits either. Within a split a problem is not repeated
while its level still has unseen problems in that split; the smallest levels (1 step of 1-digit
numbers: about a hundred problems in all) run out, and then repeat rather than shift the mix of
levels. Everything is deterministic given `seed` (Python's `random.Random` seeded with a
string, stable across versions), and `make_split(task, split, n)` is a prefix of the same call
with a larger `n`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import Literal

from corea_jax.data.prompts import PromptTemplates
from corea_jax.data.records import DataError, Record

Style = Literal["arithmetic", "word", "mixed"]

# Short prompts for the tiny demo model: the question alone, no system text.
SYNTHETIC_PROMPTS = PromptTemplates(system="", numeric="{question}")

_NAMES = ("Ann", "Ben", "Eva", "Sam")
_ITEMS = ("coins", "apples", "books", "cards")
_MAX_TRIES = 1000


@dataclasses.dataclass(frozen=True)
class SyntheticTask:
    """The generator's settings; every field is a default the paper leaves open.

    Attributes:
      seed: selects both the problems and which split each possible problem belongs to.
      min_steps / max_steps: inclusive range of operations per problem.
      min_digits / max_digits: inclusive range of digits per number.
      ops: operations to draw from, a subset of "+", "-", "*".
      style: "arithmetic", "word", or "mixed" (each problem picks one of the two at random).
      allow_negative: False turns a "-" that would go below zero into "+".
      splits: (name, share of all problems) pairs; shares must be positive and sum to 1.
    """

    seed: int = 0
    min_steps: int = 1
    max_steps: int = 3
    min_digits: int = 1
    max_digits: int = 3
    ops: tuple[str, ...] = ("+", "-")
    style: Style = "arithmetic"
    allow_negative: bool = False
    splits: tuple[tuple[str, float], ...] = (("train", 0.8), ("calibration", 0.1), ("test", 0.1))

    def __post_init__(self):
        if not 1 <= self.min_steps <= self.max_steps:
            raise DataError(f"synthetic task: need 1 <= min_steps <= max_steps, got {self}")
        if not 1 <= self.min_digits <= self.max_digits <= 9:
            raise DataError(f"synthetic task: need 1 <= min_digits <= max_digits <= 9, got {self}")
        if not self.ops or not set(self.ops) <= {"+", "-", "*"}:
            raise DataError(
                f"synthetic task: ops must be a subset of '+', '-', '*', got {self.ops}"
            )
        if self.style not in ("arithmetic", "word", "mixed"):
            raise DataError(f"synthetic task: unknown style {self.style!r}")
        shares = [share for _, share in self.splits]
        if not shares or min(shares) <= 0 or abs(sum(shares) - 1) > 1e-9:
            raise DataError(
                f"synthetic task: split shares must be positive and sum to 1: {self.splits}"
            )
        names = [name for name, _ in self.splits]
        if len(set(names)) != len(names):
            raise DataError(f"synthetic task: split names repeat: {names}")

    @property
    def levels(self) -> tuple[tuple[int, int], ...]:
        """Every (steps, digits) pair, in the order `make_split` visits them."""
        return tuple(
            (s, d)
            for s in range(self.min_steps, self.max_steps + 1)
            for d in range(self.min_digits, self.max_digits + 1)
        )

    def split_of(self, expression: str) -> str:
        """The one split that the problem with this canonical expression belongs to."""
        digest = hashlib.sha256(f"{self.seed}|{expression}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2.0**64
        total = 0.0
        for name, share in self.splits:
            total += share
            if u < total:
                return name
        return self.splits[-1][0]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One generated problem: `start`, then `ops` applied left to right."""

    start: int
    ops: tuple[tuple[str, int], ...]
    digits: int

    @property
    def steps(self) -> int:
        return len(self.ops)

    @property
    def expression(self) -> str:
        """Canonical, style-free text: '34+57-12'. Splits are assigned by it."""
        return str(self.start) + "".join(f"{op}{x}" for op, x in self.ops)

    def values(self) -> list[int]:
        """The running value after each step (the last one is the answer)."""
        out, value = [], self.start
        for op, x in self.ops:
            value = _apply(value, op, x)
            out.append(value)
        return out

    @property
    def answer(self) -> int:
        return self.values()[-1]

    def question(self, style: Literal["arithmetic", "word"], name: str, item: str) -> str:
        head = f"[steps {self.steps}, digits {self.digits}]"
        if style == "arithmetic":
            text = str(self.start)
            for i, (op, x) in enumerate(self.ops):
                if op == "*" and i > 0 and self.ops[i - 1][0] != "*":
                    text = f"({text})"
                text = f"{text} {op} {x}"
            return f"{head} What is {text}?"
        sentences = [f"{name} has {self.start} {item}."]
        verbs = {"+": "gets {x} more", "-": "gives away {x}", "*": "gets {x} times as many"}
        sentences += [f"{name} {verbs[op].format(x=x)}." for op, x in self.ops]
        return f"{head} {' '.join(sentences)} How many {item} does {name} have?"

    def trace(self) -> str:
        """The worked steps: '34 + 57 = 91. 91 - 12 = 79.'"""
        parts, value = [], self.start
        for (op, x), new in zip(self.ops, self.values(), strict=True):
            parts.append(f"{value} {op} {x} = {new}.")
            value = new
        return " ".join(parts)


def _apply(value: int, op: str, x: int) -> int:
    return value + x if op == "+" else value - x if op == "-" else value * x


def _draw(task: SyntheticTask, rng: random.Random, steps: int, digits: int) -> Problem:
    lo, hi = 10 ** (digits - 1), 10**digits - 1
    value = rng.randint(lo, hi)
    start, ops = value, []
    for _ in range(steps):
        op, x = rng.choice(task.ops), rng.randint(lo, hi)
        if op == "-" and x > value and not task.allow_negative:
            op = "+"
        ops.append((op, x))
        value = _apply(value, op, x)
    return Problem(start=start, ops=tuple(ops), digits=digits)


def make_split(task: SyntheticTask, split: str, n: int) -> tuple[Record, ...]:
    """`n` records of split `split`, levels taken in turn (record i has level `levels[i % L]`).

    Records have kind "numeric", id f"synthetic-{split}-{i}", and metadata with the level
    (`steps`, `digits`), the `split`, the `style` used, and the problem itself (`start`, `ops`) so
    that `reference_completion` can rebuild the trace.
    """
    names = [name for name, _ in task.splits]
    if split not in names:
        raise DataError(f"synthetic task: unknown split {split!r}; this task has {names}")
    if n < 0:
        raise DataError(f"synthetic task: n must be >= 0, got {n}")
    levels = task.levels
    rng = random.Random(f"corea-synthetic|{task.seed}|{split}")
    seen: set[str] = set()
    exhausted: set[tuple[int, int]] = set()
    records = []
    for i in range(n):
        steps, digits = levels[i % len(levels)]
        problem = _next_problem(task, rng, split, steps, digits, seen, exhausted)
        seen.add(problem.expression)
        style = task.style if task.style != "mixed" else rng.choice(("arithmetic", "word"))
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        records.append(
            Record(
                id=f"synthetic-{split}-{i}",
                question=problem.question(style, name, item),
                answer=str(problem.answer),
                kind="numeric",
                metadata={
                    "steps": problem.steps,
                    "digits": problem.digits,
                    "split": split,
                    "style": style,
                    "start": problem.start,
                    "ops": [[op, x] for op, x in problem.ops],
                },
            )
        )
    return tuple(records)


def _next_problem(task, rng, split, steps, digits, seen, exhausted) -> Problem:
    repeat = None
    for _ in range(_MAX_TRIES):
        problem = _draw(task, rng, steps, digits)
        if task.split_of(problem.expression) != split:
            continue
        if problem.expression not in seen:
            return problem
        if (steps, digits) in exhausted:
            return problem
        repeat = repeat or problem
    if repeat is None:
        raise DataError(
            f"synthetic task: no problem of split {split!r} at steps={steps}, digits={digits} in "
            f"{_MAX_TRIES} draws; is its share in `splits` too small?"
        )
    exhausted.add((steps, digits))
    return repeat


def problem_of(record: Record) -> Problem:
    """The `Problem` behind a synthetic record (from its metadata)."""
    try:
        meta = record.metadata
        ops = tuple((str(op), int(x)) for op, x in meta["ops"])
        return Problem(start=int(meta["start"]), ops=ops, digits=int(meta["digits"]))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"record {record.id!r}: not a synthetic record ({e!r} in metadata)") from e


def format_confidence(confidence: float, decimals: int = 2) -> str:
    """A confidence as written in a completion; [open] two decimals by default, as in '0.85'."""
    if not 0.0 <= confidence <= 1.0:
        raise DataError(f"confidence must be in [0, 1], got {confidence}")
    if not 0 <= decimals <= 6:
        raise DataError(f"confidence decimals must be in 0..6, got {decimals}")
    return f"{confidence:.{decimals}f}"


def warmup_confidence(record: Record, high: float, random_share: float = 0.0) -> float:
    """The confidence a supervised warm-up trace of `record` states.

    `high` on all but a `random_share` of the records; those state a two-decimal value drawn
    uniformly from {0.00, 0.01, ..., 1.00}. Both the choice and the value come from a hash of the
    question (independent bytes of one sha256), so they are fixed across epochs and runs and say
    nothing about the question's level or whether an answer is right: the warm model learns a
    confidence that carries no information, and sampled at temperature 1 it states the mixture
    (about `1 - random_share` of "0.90" when `high` is 0.9, the rest spread over [0, 1]).

    Why a share of uniform values rather than every trace drawn around `high` [open]: a uniform
    share puts probability on the whole range, low values included, so a GRPO group on a hard
    question already contains samples near the calibrated answer (a spread around 0.9 would leave
    the low end to extrapolation), and the many distinct values make discreteness after training
    an outcome rather than an input (the previous rule drew from 11 tenths). The `high` part keeps
    the start over-confident on average, as instruct SLMs are: the mean stated value is
    `(1 - random_share) * high + random_share * 0.5` (0.70 at high 0.9, share 0.5). Greedy
    decoding picks the mode, so a greedy warm model states `high` almost always; the variety is
    in its samples. With `random_share=0` every sample of a GRPO group states `high` and the
    calibration term has nothing to compare [open: the paper starts from instruct models that
    already state varied confidences].
    """
    if not 0.0 <= random_share <= 1.0:
        raise DataError(f"sft_random_confidence must be in [0, 1], got {random_share}")
    digest = hashlib.sha256(f"warmup-confidence|{record.question}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    if draw >= random_share:
        return high
    # 2**64 mod 101 / 2**64 ~ 1e-18: the modulo's bias is far below anything measurable.
    return int.from_bytes(digest[8:16], "big") % 101 / 100


def reference_completion(record: Record, confidence: float, decimals: int = 2) -> str:
    """The supervised warm-up target for a synthetic record, stating `confidence` (in [0, 1])."""
    problem = problem_of(record)
    return (
        f"<think>{problem.trace()}</think><answer>{problem.answer}</answer>"
        f"<confidence>{format_confidence(confidence, decimals)}</confidence>"
    )

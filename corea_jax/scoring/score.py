"""The one scoring path: completion texts + what each question needs to be graded -> arrays.

Training (rollout rewards and the held-out evaluation), `corea-jax evaluate --completions` and
the cascade all call `score_texts`, so the same completion to the same question gets the same
answer, confidence, format flag and grade everywhere.

    items = [ScoreItem.from_record(r) for r in records]          # or ScoreItem(gold, kind, ...)
    scored = score_texts(texts, items, grader, "tags")            # a `Scored`, R rows
    scored.correct, scored.confidence, scored.format_ok           # [R] arrays
    scored.grouped(b, g).correct                                  # [B, G] when R = B * G

Choices: a multiple-choice question is parsed with choice letters (the answer "(B) Paris" is
read as "B") and graded with its options, so an answer naming the option text is right too.
An invalid or missing confidence is NaN in `confidence` and False in `confidence_valid`; what
it counts as (0, i.e. defer, by default) is the caller's reading (`confidence_or`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from corea_jax.scoring import grading, parsing
from corea_jax.scoring.grading import GradeTask

CHOICE_LETTERS = "ABCDEFGHIJ"


@dataclasses.dataclass(frozen=True)
class ScoreItem:
    """What grading one answer needs: the gold answer, its kind and (multiple choice) options.

    `choices` is normalised to (label, text) pairs (`grading.normalize_choices`), or None.
    """

    gold: str
    kind: str = "auto"
    choices: tuple[tuple[str, str], ...] | None = None

    @classmethod
    def from_record(cls, record) -> ScoreItem:
        """From a `corea_jax.data.Record` (its option texts are labelled A, B, ...)."""
        return cls(record.answer, record.kind, grading.normalize_choices(record.choices or None))


def item_format(fmt: parsing.OutputFormat | str, item: ScoreItem) -> parsing.OutputFormat:
    """The layout to parse an answer to `item` with: choice questions read a letter."""
    fmt = parsing.get_format(fmt) if isinstance(fmt, str) else fmt
    if (item.kind == "choice" or item.choices) and fmt.choice_letters is None:
        fmt = dataclasses.replace(fmt, choice_letters=CHOICE_LETTERS)
    return fmt


@dataclasses.dataclass(frozen=True)
class Scored:
    """R scored completions. Arrays are [R]; strings stay lists (they never enter a jit)."""

    answer: list[str | None]
    confidence: np.ndarray  # [R] float64 (as stated, not rounded), NaN where invalid
    confidence_valid: np.ndarray  # [R] bool
    format_ok: np.ndarray  # [R] bool
    correct: np.ndarray  # [R] bool
    format_reason: list[str]
    grade_method: list[str]
    grade_reason: list[str]

    def __len__(self) -> int:
        return len(self.answer)

    def confidence_or(self, invalid: float = 0.0) -> np.ndarray:
        """[R] float32 confidences with invalid ones read as `invalid` (0: defer)."""
        return np.where(self.confidence_valid, self.confidence, invalid).astype(np.float32)

    def grouped(self, b: int, g: int) -> Scored:
        """The same rows viewed [B, G] (row r = prompt r // G, sample r % G); lists stay flat."""
        if b * g != len(self):
            raise ValueError(f"{len(self)} rows do not form [B={b}, G={g}]")
        shape = lambda x: x.reshape(b, g)  # noqa: E731
        return dataclasses.replace(
            self,
            confidence=shape(self.confidence),
            confidence_valid=shape(self.confidence_valid),
            format_ok=shape(self.format_ok),
            correct=shape(self.correct),
        )

    def rows(self) -> list[dict]:
        """One dict per row: answer, confidence (None when invalid), confidence_valid,
        format_ok, format_reason, correct, grade_method, grade_reason."""
        conf = self.confidence.reshape(-1)
        valid = self.confidence_valid.reshape(-1)
        return [
            {
                "answer": self.answer[r],
                "confidence": float(conf[r]) if valid[r] else None,
                "confidence_valid": bool(valid[r]),
                "format_ok": bool(self.format_ok.reshape(-1)[r]),
                "format_reason": self.format_reason[r],
                "correct": bool(self.correct.reshape(-1)[r]),
                "grade_method": self.grade_method[r],
                "grade_reason": self.grade_reason[r],
            }
            for r in range(len(self))
        ]


def score_texts(
    texts: Sequence[str],
    items: Sequence[ScoreItem],
    grader,
    fmt: parsing.OutputFormat | str = "tags",
) -> Scored:
    """Parses and grades completion r against items[r].

    Args:
      texts: R completion texts.
      items: R `ScoreItem`s (repeat a question's item for each of its samples).
      grader: a `corea_jax.scoring.grading_workers.Grader` (anything with `grade(tasks)`).
      fmt: the output layout, a `parsing.OutputFormat` or a name of `parsing.FORMATS`.
    """
    if len(texts) != len(items):
        raise ValueError(f"{len(texts)} texts for {len(items)} items")
    parsed = [
        parsing.parse_completion(t, item_format(fmt, i)) for t, i in zip(texts, items, strict=True)
    ]
    grades = grader.grade(
        [GradeTask(i.gold, p.answer, i.kind, i.choices) for i, p in zip(items, parsed, strict=True)]
    )
    return Scored(
        answer=[p.answer for p in parsed],
        confidence=np.array(
            [np.nan if p.confidence is None else p.confidence for p in parsed], np.float64
        ),
        confidence_valid=np.array([p.confidence_valid for p in parsed], bool),
        format_ok=np.array([p.format_ok for p in parsed], bool),
        correct=np.array([g.correct for g in grades], bool),
        format_reason=[p.reason for p in parsed],
        grade_method=[g.method for g in grades],
        grade_reason=[g.reason for g in grades],
    )

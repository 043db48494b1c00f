"""The one record type every dataset is read into, and the data layer's error type.

A `Record` is what the rest of the project sees of a question: an id, the question text, the gold
answer as a string, how that answer is graded (`kind`), the options of a multiple-choice question,
and whatever else the source file carried that grading or reporting may want (`metadata`).

Answer kinds (the grader picks its comparison from this, not from the dataset name):
  - "math":    a LaTeX / free-form answer checked for mathematical equivalence (MATH-500,
               OlympiadBench, DeepMath; DeepMath's Yes/No and letter answers are left to the
               grader).
  - "numeric": a single number (GSM8K, AIME, AMC, the synthetic task).
  - "choice":  a letter "A", "B", ... indexing `choices` (CommonsenseQA, GPQA).
"""

from __future__ import annotations

import dataclasses
import json
import string
from collections.abc import Mapping
from typing import Any, Literal

from corea_jax.errors import CoreaError

AnswerKind = Literal["math", "numeric", "choice"]
ANSWER_KINDS: tuple[str, ...] = ("math", "numeric", "choice")
LETTERS = string.ascii_uppercase


class DataError(CoreaError):
    """A data file, row, field or data option that cannot be used; the message says which."""


@dataclasses.dataclass(frozen=True)
class Record:
    """One question with its gold answer.

    Attributes:
      id: unique within its dataset split (the source's own id where it has one).
      question: the question text as the source gives it (for "choice" without the options; the
        prompt templates lay the options out).
      answer: the gold answer as a string; for "choice" a letter indexing `choices`.
      kind: "math", "numeric" or "choice" (see the module docstring).
      choices: option texts for "choice" questions, in letter order A, B, ...; empty otherwise.
      metadata: JSON-serialisable extras from the source (level, subject, unit, difficulty, ...).
        Excluded from equality and hashing so records compare by content.
    """

    id: str
    question: str
    answer: str
    kind: AnswerKind
    choices: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.kind not in ANSWER_KINDS:
            raise DataError(
                f"record {self.id!r}: kind must be one of {ANSWER_KINDS}, got {self.kind!r}"
            )
        if not isinstance(self.choices, tuple):
            object.__setattr__(self, "choices", tuple(self.choices))
        if self.kind == "choice":
            if not 2 <= len(self.choices) <= len(LETTERS):
                raise DataError(f"record {self.id!r}: a choice question needs 2 or more choices")
            if self.answer not in LETTERS[: len(self.choices)]:
                raise DataError(
                    f"record {self.id!r}: answer {self.answer!r} is not one of the letters "
                    f"{LETTERS[: len(self.choices)]}"
                )
        elif self.choices:
            raise DataError(f"record {self.id!r}: only choice questions have choices")

    @property
    def answer_text(self) -> str:
        """The gold answer spelt out: the option text for choice questions, else `answer`."""
        if self.kind == "choice":
            return self.choices[LETTERS.index(self.answer)]
        return self.answer

    def to_json(self) -> dict[str, Any]:
        """A plain dict (lists, not tuples) that `json.dumps` accepts and `from_json` inverts."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "kind": self.kind,
            "choices": list(self.choices),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Record:
        """Inverse of `to_json`; raises `DataError` naming the missing field."""
        for key in ("id", "question", "answer", "kind"):
            if key not in row:
                raise DataError(f"record dict has no field {key!r}")
        return cls(
            id=str(row["id"]),
            question=row["question"],
            answer=row["answer"],
            kind=row["kind"],
            choices=tuple(row.get("choices") or ()),
            metadata=dict(row.get("metadata") or {}),
        )


def metadata_json(metadata: Mapping[str, Any]) -> str:
    """Canonical JSON text of a metadata dict (sorted keys), as stored in TFDS examples."""
    return json.dumps(dict(metadata), sort_keys=True, ensure_ascii=False)

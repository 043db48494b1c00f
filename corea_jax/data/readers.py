"""Benchmark readers: published JSONL / Parquet / CSV layouts -> `Record`s.

`read_dataset(name, source)` reads any local copy of a benchmark: the files in `shared/data/`, a
Hugging Face hub snapshot (Parquet shards), or a file of your own with the same fields. `source`
is a file, a glob pattern, a list of files, or a directory (then the dataset's usual file names
are looked up in it, and in `<directory>/<name>/`, see `DATASETS[name].default_files`).

Fields read, per dataset (aliases in the order tried):
  deepmath       question, final_answer; keeps difficulty, topic and other scalar fields.
                 The r1_solution_{1,2,3} traces are dropped: three long traces per row would
                 dominate memory for 103K rows (read them with `rows.iter_rows` if needed).
                 id = "deepmath-" + sha256(question)[:16], so ids follow the text, not the row.
  math500        problem, answer, unique_id, subject, level, solution.
  gsm8k          question, answer: the number after "####" (thousands commas removed; the raw
                 string and the worked solution go to metadata); id = "gsm8k-<row index>".
  olympiadbench  question, final_answer (a list; several entries are joined with ", ", and the
                 list is kept in metadata), is_multiple_answer, unit, answer_type, solution.
                 Text-only subsets: a row with an `image_N` field set is an error.
  aime24         problem|question|Problem, answer|Answer (kept as written, e.g. "025").
  amc23          question|problem, answer (floats such as 27.0 become "27").
  commonsenseqa  the official layout (question.stem, question.choices[].label/text) or the hub
                 layout (question, choices.label[], choices.text[]); answerKey.
  gpqa           Question, Correct Answer, Incorrect Answer 1-3, Record ID. The four options are
                 shuffled into A-D by a permutation fixed per question: options are ordered by
                 sha256(f"{choice_seed}|{Record ID or question}|{index}"), so the order does not
                 depend on row order, file format or Python version. [open] `choice_seed`
                 (default 0) is a `read_dataset` argument.

Malformed rows raise `DataError` naming the file and line (or row) and the field; with
`on_error="skip"` they are counted and returned in `ReadResult.skipped` instead (and logged), but a
file that yields no record at all is still an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from corea_jax.data import rows as rows_lib
from corea_jax.data.records import LETTERS, AnswerKind, DataError, Record

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]


class _FieldError(Exception):
    """A row-level problem; `read_dataset` adds the file and line."""


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """Options that change how rows become records.

    Attributes:
      choice_seed: [open] seed of the fixed per-question shuffle of GPQA's options (default 0).
    """

    choice_seed: int = 0


RowParser = Callable[[Mapping[str, Any], int, ReadOptions], Record]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How one benchmark is read.

    Attributes:
      name: the key in `DATASETS`.
      kind: the answer kind of its records.
      parse: (row, 0-based row index over all files, options) -> Record; raises on a bad field.
      default_files: glob patterns tried in order, relative to a directory `source`; the first
        pattern that matches is used.
      unique_ids: whether duplicate ids are an error (DeepMath ids follow the question text, so a
        repeated question repeats its id; the split removes such repeats).
    """

    name: str
    kind: AnswerKind
    parse: RowParser
    default_files: tuple[str, ...]
    unique_ids: bool = True


@dataclasses.dataclass(frozen=True)
class SkippedRow:
    where: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ReadResult:
    """What `read_dataset` returns: the records, the rows skipped (on_error="skip"), the files."""

    records: tuple[Record, ...]
    skipped: tuple[SkippedRow, ...]
    files: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.records)


# --- field helpers ------------------------------------------------------------------------------


def _get(row: Mapping[str, Any], *names: str) -> tuple[str, Any]:
    for name in names:
        if name in row and row[name] is not None:
            return name, row[name]
    raise _FieldError(f"missing field {' or '.join(repr(n) for n in names)}")


def _text(row: Mapping[str, Any], *names: str) -> str:
    name, value = _get(row, *names)
    if not isinstance(value, str):
        raise _FieldError(f"field {name!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _FieldError(f"field {name!r} is empty")
    return value


def _answer(row: Mapping[str, Any], *names: str) -> str:
    """A gold answer as a string; integers and integral floats print without a decimal point."""
    name, value = _get(row, *names)
    if isinstance(value, bool):
        raise _FieldError(f"field {name!r} must be a string or a number, got bool")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _FieldError(f"field {name!r} is not a finite number: {value}")
        return str(int(value)) if value.is_integer() else repr(value)
    if not isinstance(value, str):
        raise _FieldError(
            f"field {name!r} must be a string or a number, got {type(value).__name__}"
        )
    if not value.strip():
        raise _FieldError(f"field {name!r} is empty")
    return value.strip()


def _scalars(row: Mapping[str, Any], skip: set[str]) -> dict[str, Any]:
    """The row's remaining JSON-scalar, non-null fields (lists and nested objects are left out)."""
    return {
        k: v
        for k, v in row.items()
        if k not in skip and v is not None and isinstance(v, (str, int, float, bool))
    }


def _row_id(row: Mapping[str, Any], index: int, prefix: str, *names: str) -> str:
    for name in names:
        if row.get(name) is not None and str(row[name]).strip():
            return str(row[name]).strip()
    return f"{prefix}-{index}"


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).hexdigest()


# --- per-dataset parsers ------------------------------------------------------------------------


def _deepmath(row, index, options):
    del index, options
    question = _text(row, "question")
    answer = _answer(row, "final_answer")
    skip = {"question", "final_answer", "r1_solution_1", "r1_solution_2", "r1_solution_3"}
    return Record(
        id=f"deepmath-{_digest(question)[:16]}",
        question=question,
        answer=answer,
        kind="math",
        metadata=_scalars(row, skip),
    )


def _math500(row, index, options):
    del options
    return Record(
        id=_row_id(row, index, "math500", "unique_id"),
        question=_text(row, "problem", "question"),
        answer=_answer(row, "answer"),
        kind="math",
        metadata=_scalars(row, {"problem", "question", "answer", "unique_id"}),
    )


_THOUSANDS = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")


def _gsm8k(row, index, options):
    del options
    solution = _text(row, "answer")
    if "####" not in solution:
        raise _FieldError("field 'answer' has no '#### <number>' final line")
    raw = solution.rsplit("####", 1)[1].strip()
    if not raw:
        raise _FieldError("field 'answer' has nothing after '####'")
    answer = raw.replace(",", "") if _THOUSANDS.fullmatch(raw) else raw
    return Record(
        id=_row_id(row, index, "gsm8k", "id"),
        question=_text(row, "question"),
        answer=answer,
        kind="numeric",
        metadata={"answer_raw": raw, "solution": solution.rsplit("####", 1)[0].strip()},
    )


def _olympiadbench(row, index, options):
    del options
    images = sorted(k for k, v in row.items() if k.startswith("image_") and v)
    if images:
        raise _FieldError(f"has {images[0]}: only OlympiadBench's text-only subsets are supported")
    name, value = _get(row, "final_answer", "answer")
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v.strip() for v in value)
    ):
        raise _FieldError(f"field {name!r} must be a non-empty list of non-empty strings")
    metadata = _scalars(row, {"question", "final_answer", "answer", "id"})
    metadata["final_answers"] = list(value)
    solution = row.get("solution")
    if isinstance(solution, list) and all(isinstance(s, str) for s in solution):
        metadata["solution"] = "\n".join(solution)
    return Record(
        id=_row_id(row, index, "olympiadbench", "id"),
        question=_text(row, "question"),
        answer=", ".join(v.strip() for v in value),
        kind="math",
        metadata=metadata,
    )


def _competition(prefix: str) -> RowParser:
    def parse(row, index, options):
        del options
        question = _text(row, "problem", "question", "Problem", "Question")
        answer = _answer(row, "answer", "Answer")
        _, raw = _get(row, "answer", "Answer")
        metadata = {k: v for k, v in (("url", row.get("url")), ("year", row.get("year"))) if v}
        if not isinstance(raw, str):
            metadata["answer_raw"] = raw
        return Record(
            id=_row_id(row, index, prefix, "id", "ID"),
            question=question,
            answer=answer,
            kind="numeric",
            metadata=metadata,
        )

    return parse


def _commonsenseqa(row, index, options):
    del options
    question = row.get("question")
    if isinstance(question, dict):  # the official release: question.{stem, choices, concept}
        stem = _text(question, "stem")
        choices_field = question.get("choices")
        if not isinstance(choices_field, list) or not all(
            isinstance(c, dict) for c in choices_field
        ):
            raise _FieldError("field 'question.choices' must be a list of {label, text} objects")
        pairs = [(c.get("label"), c.get("text")) for c in choices_field]
        concept = question.get("question_concept")
    else:  # the hub layout: question (str), choices.{label: [...], text: [...]}
        stem = _text(row, "question")
        choices_field = row.get("choices")
        if not isinstance(choices_field, dict):
            raise _FieldError("field 'choices' must be an object with 'label' and 'text' lists")
        labels, texts = choices_field.get("label"), choices_field.get("text")
        if not isinstance(labels, list) or not isinstance(texts, list) or len(labels) != len(texts):
            raise _FieldError(
                "fields 'choices.label' and 'choices.text' must be equal-length lists"
            )
        pairs = list(zip(labels, texts, strict=True))
        concept = row.get("question_concept")
    for label, text in pairs:
        if not isinstance(label, str) or not isinstance(text, str) or not text.strip():
            raise _FieldError(f"choice {label!r} needs a string label and a non-empty text")
    pairs.sort(key=lambda p: p[0])
    labels = [p[0] for p in pairs]
    if labels != list(LETTERS[: len(labels)]):
        raise _FieldError(f"choice labels must be A, B, ... without gaps, got {labels}")
    answer = row.get("answerKey")
    if not isinstance(answer, str) or answer not in labels:
        raise _FieldError(
            f"field 'answerKey' must be one of {labels}, got {answer!r} (an unlabelled test split?)"
        )
    return Record(
        id=_row_id(row, index, "commonsenseqa", "id"),
        question=stem,
        answer=answer,
        kind="choice",
        choices=tuple(p[1] for p in pairs),
        metadata={"question_concept": concept} if isinstance(concept, str) else {},
    )


GPQA_OPTION_FIELDS = (
    "Correct Answer",
    "Incorrect Answer 1",
    "Incorrect Answer 2",
    "Incorrect Answer 3",
)


def gpqa_permutation(key: str, seed: int, n: int = 4) -> tuple[int, ...]:
    """The fixed option order for one question: `perm[letter_index] = original option index`.

    Options are sorted by sha256(f"{seed}|{key}|{i}"): stable across runs, Python versions and row
    order, and different per question, so the correct option (index 0) lands on each letter about
    equally often.
    """
    return tuple(sorted(range(n), key=lambda i: _digest(seed, key, i)))


def _gpqa(row, index, options):
    question = _text(row, "Question", "question")
    texts = [_text(row, name).strip() for name in GPQA_OPTION_FIELDS]
    record_id = _row_id(row, index, "gpqa", "Record ID", "id")
    key = record_id if record_id != f"gpqa-{index}" else question
    perm = gpqa_permutation(key, options.choice_seed)
    metadata = {
        k: row[k] for k in ("Subdomain", "High-level domain") if isinstance(row.get(k), str)
    }
    metadata["choice_seed"] = options.choice_seed
    return Record(
        id=record_id,
        question=question.strip(),
        answer=LETTERS[perm.index(0)],
        kind="choice",
        choices=tuple(texts[i] for i in perm),
        metadata=metadata,
    )


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "deepmath",
            "math",
            _deepmath,
            ("deepmath103k_subset.jsonl", "*.jsonl", "data/train-*.parquet", "*.parquet"),
            unique_ids=False,
        ),
        DatasetSpec("math500", "math", _math500, ("test.jsonl", "test-*.parquet")),
        DatasetSpec("gsm8k", "numeric", _gsm8k, ("test.jsonl", "main/test-*.parquet")),
        DatasetSpec(
            "olympiadbench",
            "math",
            _olympiadbench,
            ("OE_TO_maths_en_COMP.jsonl", "OE_TO_maths_en_COMP*.parquet", "test.jsonl"),
        ),
        DatasetSpec(
            "aime24", "numeric", _competition("aime24"), ("test.jsonl", "data/train-*.parquet")
        ),
        DatasetSpec("amc23", "numeric", _competition("amc23"), ("test.jsonl", "test-*.parquet")),
        DatasetSpec(
            "commonsenseqa",
            "choice",
            _commonsenseqa,
            ("dev_rand_split.jsonl", "data/validation-*.parquet"),
        ),
        # [open] which GPQA set: main (448, the set RLCR reports) before diamond (198).
        DatasetSpec("gpqa", "choice", _gpqa, ("gpqa_main.csv", "gpqa_diamond.csv", "*.csv")),
    )
}


def dataset_files(name: str, source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The files `read_dataset(name, source)` would read, in order."""
    spec = _spec(name)
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        directory = Path(source)
        for base in (directory, directory / name):
            for pattern in spec.default_files:
                matches = sorted(p for p in base.glob(pattern) if p.is_file())
                if matches:
                    return matches
        raise DataError(
            f"{directory}: no {name} file found; looked for {list(spec.default_files)} there and "
            f"in {directory / name}. Pass the file path instead."
        )
    return rows_lib.expand_paths(source)


def read_dataset(
    name: str,
    source: str | Path | Sequence[str | Path],
    *,
    on_error: OnError = "raise",
    options: ReadOptions = ReadOptions(),
) -> ReadResult:
    """Reads benchmark `name` (a key of `DATASETS`) from local files.

    Args:
      name: "deepmath", "math500", "gsm8k", "olympiadbench", "aime24", "amc23", "commonsenseqa"
        or "gpqa".
      source: a file, glob pattern, list of files, or a directory holding the usual file names.
      on_error: "raise" (default): the first malformed row raises `DataError` naming file, line
        and field. "skip": malformed rows are left out, counted in `ReadResult.skipped` and
        logged as a warning. Unreadable files (missing, empty, wrong type) always raise.
      options: see `ReadOptions`.
    """
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    spec = _spec(name)
    files = dataset_files(name, source)
    records: list[Record] = []
    skipped: list[SkippedRow] = []
    first_seen: dict[str, str] = {}
    index = 0
    for path in files:
        for where, row in rows_lib.iter_rows(path):
            try:
                try:
                    record = spec.parse(row, index, options)
                except DataError as e:  # a Record invariant, e.g. an answer letter out of range
                    raise _FieldError(str(e)) from e
                if spec.unique_ids and record.id in first_seen:
                    raise _FieldError(
                        f"duplicate id {record.id!r} (first at {first_seen[record.id]})"
                    )
            except _FieldError as e:
                if on_error == "raise":
                    raise DataError(f"{where}: {name}: {e}") from None
                skipped.append(SkippedRow(where, str(e)))
            else:
                first_seen.setdefault(record.id, where)
                records.append(record)
            index += 1
    if skipped:
        log.warning(
            "%s: skipped %d of %d rows (first: %s: %s)",
            name,
            len(skipped),
            index,
            skipped[0].where,
            skipped[0].reason,
        )
    if not records:
        shown = ", ".join(str(p) for p in files)
        raise DataError(f"{shown}: no valid {name} rows ({len(skipped)} skipped)")
    return ReadResult(tuple(records), tuple(skipped), tuple(files))


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]

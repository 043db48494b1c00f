"""Rows out of local data files: JSONL, JSON arrays, Parquet and CSV, each row with its location.

Formats are chosen by file suffix: `.jsonl` / `.ndjson` (one object per line; blank lines are
allowed and skipped), `.json` (an array of objects, as some Hugging Face dumps ship), `.parquet`
(the Hugging Face hub's format; needs `pyarrow`, which `tensorflow-datasets` already installs, and
is imported only when a Parquet file is read) and `.csv` (GPQA's official format).

Every row comes with a `where` string naming the file and the 1-based line (JSONL, CSV) or row
(JSON array, Parquet), so any error about that row can point at it. A missing file, an empty file
and a row that is not a JSON object are errors; decoding of the row's fields is left to the
dataset readers.
"""

from __future__ import annotations

import csv
import glob
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from corea_jax.data.records import DataError

SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".csv")
_GLOB_CHARS = set("*?[")


def expand_paths(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files named by a path, a glob pattern or a sequence of them (each pattern's matches sorted).

    Raises `DataError` when a named file does not exist or a pattern matches nothing.
    """
    items = [source] if isinstance(source, (str, Path)) else list(source)
    if not items:
        raise DataError("no data files given")
    paths: list[Path] = []
    for item in items:
        text = str(item)
        if _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise DataError(f"{text}: no file matches this pattern")
            paths.extend(Path(m) for m in matches)
        else:
            paths.append(Path(text))
    for path in paths:
        if not path.exists():
            raise DataError(f"{path}: file not found")
    return paths


def iter_rows(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields `(where, row)` for every row of one file; `where` is e.g. 'data/test.jsonl:12'.

    Raises `DataError` for a missing or empty file, an unknown suffix, and a row that does not
    parse as a JSON object (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    suffix = path.suffix.lower()
    readers = {
        ".jsonl": _jsonl_rows,
        ".ndjson": _jsonl_rows,
        ".json": _json_array_rows,
        ".parquet": _parquet_rows,
        ".csv": _csv_rows,
    }
    if suffix not in readers:
        raise DataError(f"{path}: unknown file type {suffix!r}; expected one of {SUFFIXES}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    count = 0
    for item in readers[suffix](path):
        count += 1
        yield item
    if count == 0:
        raise DataError(f"{path}: file has no rows")


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start})") from e
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from e
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def _json_array_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from e
    if not isinstance(data, list):
        raise DataError(f"{path}: a .json data file must hold an array of objects")
    for number, row in enumerate(data, start=1):
        where = f"{path}: row {number}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield where, row


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - pyarrow comes with tensorflow-datasets
        raise DataError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from e
    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own error types for corrupt files
        raise DataError(f"{path}: not a readable Parquet file: {e}") from e
    number = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield f"{path}: row {number}", row


def _csv_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            return
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{path}:1: unreadable CSV header: {e}") from e
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (UnicodeDecodeError, csv.Error) as e:
                raise DataError(f"{path}:{start}: unreadable CSV row: {e}") from e
            where = f"{path}:{start}"
            start = reader.line_num + 1
            if not cells:
                continue
            if len(cells) != len(header):
                raise DataError(f"{where}: {len(cells)} cells but the header has {len(header)}")
            yield where, dict(zip(header, cells, strict=True))

"""Benchmark readers: every shipped file read in full, other layouts agree, bad rows are named."""

import collections
import csv
import hashlib
import json
import logging
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corea_jax.data import DATASETS, DataError, Record, gpqa_permutation, read_dataset
from corea_jax.data.readers import ReadOptions
from corea_jax.errors import CoreaError

# dataset -> (folder, file) in shared/data
SHIPPED = {
    "deepmath": ("deepmath", "deepmath103k_subset.jsonl"),
    "math500": ("math500", "test.jsonl"),
    "gsm8k": ("gsm8k", "test.jsonl"),
    "olympiadbench": ("olympiadbench", "OE_TO_maths_en_COMP.jsonl"),
    "aime24": ("aime24", "test.jsonl"),
    "amc23": ("amc23", "test.jsonl"),
    "commonsenseqa": ("commonsenseqa", "dev_rand_split.jsonl"),
}
ROWS = {
    "deepmath": 3996,
    "math500": 500,
    "gsm8k": 1319,
    "olympiadbench": 675,
    "aime24": 30,
    "amc23": 40,
    "commonsenseqa": 1221,
}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def raw_rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def source_facts(folder):
    """(row count, sha256) as written in SOURCE.md."""
    text = (folder / "SOURCE.md").read_text(encoding="utf-8")
    rows = int(re.search(r"([\d,]+) rows", text).group(1).replace(",", ""))
    sha = re.search(r"sha256:? `([0-9a-f]{64})`", text).group(1)
    return rows, sha


@pytest.fixture(scope="module")
def shipped(shared_data):
    return {name: read_dataset(name, shared_data / folder) for name, (folder, _) in SHIPPED.items()}


# --- the shipped files ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_file_is_read_in_full_and_matches_source_md(name, shared_data, shipped):
    folder, filename = SHIPPED[name]
    path = shared_data / folder / filename
    rows, sha = source_facts(shared_data / folder)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    result = shipped[name]
    assert result.files == (path,)
    assert len(result.records) == rows == ROWS[name] == len(raw_rows(path))
    assert result.skipped == ()
    for record in result.records:
        assert record.kind == DATASETS[name].kind
        assert record.id and record.question.strip() and record.answer
        assert record.answer == record.answer.strip()
        json.dumps(record.to_json())  # metadata stays JSON-serialisable
        assert Record.from_json(json.loads(json.dumps(record.to_json()))) == record
    assert len({r.id for r in result.records}) == rows


def test_math500_fields_and_counts(shipped, shared_data):
    records = shipped["math500"].records
    raw = raw_rows(shared_data / "math500" / "test.jsonl")
    assert [r.id for r in records] == [row["unique_id"] for row in raw]
    assert [r.answer for r in records] == [row["answer"].strip() for row in raw]
    assert records[0].id == "test/precalculus/807.json"
    subjects = collections.Counter(r.metadata["subject"] for r in records)
    assert subjects == {
        "Algebra": 124,
        "Intermediate Algebra": 97,
        "Prealgebra": 82,
        "Number Theory": 62,
        "Precalculus": 56,
        "Geometry": 41,
        "Counting & Probability": 38,
    }
    levels = collections.Counter(r.metadata["level"] for r in records)
    assert levels == {1: 43, 2: 90, 3: 105, 4: 128, 5: 134}
    assert all("\\boxed" in r.metadata["solution"] for r in records)


def test_gsm8k_answer_is_the_number_after_hashes(shipped, shared_data):
    records = shipped["gsm8k"].records
    raw = raw_rows(shared_data / "gsm8k" / "test.jsonl")
    assert [r.id for r in records] == [f"gsm8k-{i}" for i in range(len(raw))]
    for record, row in zip(records, raw, strict=True):
        tail = row["answer"].split("####")[-1].strip()
        assert record.metadata["answer_raw"] == tail
        assert record.answer == tail.replace(",", "")
        assert re.fullmatch(r"-?\d+(\.\d+)?", record.answer), record.answer
        assert "####" not in record.metadata["solution"]
    assert sum(r.answer != r.metadata["answer_raw"] for r in records) == 14  # thousands commas
    assert records[0].answer == "18"


def test_olympiadbench_fields_and_counts(shipped):
    records = shipped["olympiadbench"].records
    assert sum(r.metadata["is_multiple_answer"] for r in records) == 94
    assert sum("unit" in r.metadata for r in records) == 8
    types = collections.Counter(r.metadata["answer_type"] for r in records)
    assert types == {"Numerical": 572, "Expression": 64, "Tuple": 33, "Interval": 6}
    subfields = collections.Counter(r.metadata["subfield"] for r in records)
    assert subfields == {
        "Algebra": 264,
        "Combinatorics": 154,
        "Geometry": 129,
        "Number Theory": 128,
    }
    assert all(len(r.metadata["final_answers"]) == 1 for r in records)
    assert all(r.answer == r.metadata["final_answers"][0].strip() for r in records)
    assert sorted(int(r.id) for r in records)[0] == 1606


def test_deepmath_fields(shipped):
    records = shipped["deepmath"].records
    answers = collections.Counter(r.answer for r in records)
    assert answers["Yes"] == 477 and answers["0"] == 360 and answers["No"] == 124
    assert len({r.question for r in records}) == len(records)
    assert all(
        r.id == f"deepmath-{hashlib.sha256(r.question.encode()).hexdigest()[:16]}" for r in records
    )
    plr = collections.Counter(r.metadata["plr_file"] for r in records)
    assert sum(plr.values()) == 3996


def test_commonsenseqa_fields_and_counts(shipped):
    records = shipped["commonsenseqa"].records
    assert all(len(r.choices) == 5 for r in records)
    keys = collections.Counter(r.answer for r in records)
    assert keys == {"A": 239, "B": 255, "C": 241, "D": 251, "E": 235}
    first = records[0]
    assert first.id == "1afa02df02c908a558b4036e80242fac"
    assert first.choices == ("bank", "library", "department store", "mall", "new york")
    assert first.answer_text == "bank"
    assert first.metadata == {"question_concept": "revolving door"}


def test_aime_answers_keep_leading_zeros_and_amc_floats_become_integers(shipped):
    aime = shipped["aime24"].records
    assert all(re.fullmatch(r"\d{3}", r.answer) for r in aime)
    assert "025" in {r.answer for r in aime}
    amc = shipped["amc23"].records
    assert amc[0].answer == "27" and amc[0].metadata["answer_raw"] == 27.0
    assert "-1" in {r.answer for r in amc}
    assert all(float(r.answer) == r.metadata["answer_raw"] for r in amc)


def test_directory_source_finds_the_usual_file_at_either_level(shared_data, shipped):
    from_root = read_dataset("math500", shared_data)
    assert from_root.records == shipped["math500"].records
    with pytest.raises(DataError, match="no gpqa file found"):
        read_dataset("gpqa", shared_data)


# --- other layouts: Parquet shards, JSON arrays, hub field names ----------------------------------


@pytest.mark.parametrize("name", ["math500", "gsm8k", "olympiadbench", "aime24", "amc23"])
def test_parquet_and_json_array_copies_read_the_same(name, shared_data, shipped, tmp_path):
    folder, filename = SHIPPED[name]
    raw = raw_rows(shared_data / folder / filename)
    pq.write_table(pa.Table.from_pylist(raw), tmp_path / "test-00000-of-00001.parquet")
    (tmp_path / "copy.json").write_text(json.dumps(raw), encoding="utf-8")
    from_parquet = read_dataset(name, tmp_path / "test-00000-of-00001.parquet")
    from_json = read_dataset(name, tmp_path / "copy.json")
    assert from_parquet.records == shipped[name].records
    assert from_json.records == shipped[name].records
    meta = [dict(r.metadata) for r in shipped[name].records]
    assert [dict(r.metadata) for r in from_parquet.records] == meta


def test_commonsenseqa_hub_layout_equals_official_layout(shared_data, shipped, tmp_path):
    hub_rows = []
    for row in raw_rows(shared_data / "commonsenseqa" / "dev_rand_split.jsonl"):
        q = row["question"]
        hub_rows.append(
            {
                "id": row["id"],
                "question": q["stem"],
                "question_concept": q["question_concept"],
                "choices": {
                    "label": [c["label"] for c in q["choices"]],
                    "text": [c["text"] for c in q["choices"]],
                },
                "answerKey": row["answerKey"],
            }
        )
    (tmp_path / "data").mkdir()
    pq.write_table(
        pa.Table.from_pylist(hub_rows), tmp_path / "data" / "validation-00000-of-00001.parquet"
    )
    hub = read_dataset("commonsenseqa", tmp_path)  # directory: hub file names are looked up
    assert hub.records == shipped["commonsenseqa"].records


def test_deepmath_hub_shards_keep_difficulty_and_topic_and_drop_r1_traces(tmp_path):
    (tmp_path / "data").mkdir()
    rows = [
        {
            "question": f"What is {i} + {i}?",
            "final_answer": str(2 * i),
            "difficulty": 3.5 + i,
            "topic": "Mathematics -> Algebra",
            "r1_solution_1": "long trace " * 50,
            "r1_solution_2": "long trace",
            "r1_solution_3": "long trace",
        }
        for i in range(6)
    ]
    pq.write_table(
        pa.Table.from_pylist(rows[:3]), tmp_path / "data" / "train-00000-of-00002.parquet"
    )
    pq.write_table(
        pa.Table.from_pylist(rows[3:]), tmp_path / "data" / "train-00001-of-00002.parquet"
    )
    result = read_dataset("deepmath", tmp_path)
    assert len(result.files) == 2
    assert [r.answer for r in result.records] == [str(2 * i) for i in range(6)]
    assert dict(result.records[4].metadata) == {
        "difficulty": 7.5,
        "topic": "Mathematics -> Algebra",
    }
    glob_result = read_dataset("deepmath", str(tmp_path / "data" / "train-*.parquet"))
    assert glob_result.records == result.records


# --- GPQA, on rows the test writes ----------------------------------------------------------------


def gpqa_rows(n):
    return [
        {
            "Record ID": f"rec{i:03d}",
            "Question": f"Which option is right for question {i}?\nThink about it.",
            "Correct Answer": f" right {i}\n",
            "Incorrect Answer 1": f"wrong {i}a",
            "Incorrect Answer 2": f"wrong {i}b",
            "Incorrect Answer 3": f"wrong {i}c",
            "Subdomain": "Physics (general)",
            "Explanation": 'because, "quoted"',
        }
        for i in range(n)
    ]


def write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_gpqa_choices_are_shuffled_per_question_and_point_at_the_correct_answer(tmp_path):
    rows = gpqa_rows(40)
    records = read_dataset("gpqa", write_csv(tmp_path / "gpqa_main.csv", rows)).records
    assert len(records) == 40
    for record, row in zip(records, rows, strict=True):
        assert record.id == row["Record ID"] and record.kind == "choice"
        assert len(record.choices) == 4
        assert record.answer_text == row["Correct Answer"].strip()
        assert sorted(record.choices) == sorted(
            [row["Correct Answer"].strip()] + [row[f"Incorrect Answer {k}"] for k in (1, 2, 3)]
        )
        assert record.metadata["Subdomain"] == "Physics (general)"
    # The correct option lands on every letter, not always on "A" as in the source columns.
    assert set(collections.Counter(r.answer for r in records)) == {"A", "B", "C", "D"}


def test_gpqa_shuffle_depends_on_the_question_not_on_file_format_or_row_order(tmp_path):
    rows = gpqa_rows(12)
    from_csv = read_dataset("gpqa", write_csv(tmp_path / "a.csv", rows)).records
    reversed_jsonl = read_dataset("gpqa", write_jsonl(tmp_path / "b.jsonl", rows[::-1])).records
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    from_parquet = read_dataset("gpqa", tmp_path / "c.parquet").records
    assert from_csv == from_parquet == tuple(reversed(reversed_jsonl))
    reseeded = read_dataset("gpqa", tmp_path / "a.csv", options=ReadOptions(choice_seed=1)).records
    assert [r.choices for r in reseeded] != [r.choices for r in from_csv]
    assert all(r.answer_text == s.answer_text for r, s in zip(reseeded, from_csv, strict=True))
    perm = gpqa_permutation("rec000", 0)
    assert sorted(perm) == [0, 1, 2, 3] and perm == gpqa_permutation("rec000", 0)


def test_gpqa_csv_errors_name_the_starting_line_of_a_multiline_row(tmp_path):
    rows = gpqa_rows(3)
    rows[2]["Incorrect Answer 2"] = ""
    write_csv(tmp_path / "gpqa_diamond.csv", rows)
    # A newline in Question and one in Correct Answer: each row spans three physical lines.
    with pytest.raises(DataError, match=r"gpqa_diamond\.csv:8: gpqa: field 'Incorrect Answer 2'"):
        read_dataset("gpqa", tmp_path)


# --- malformed input ------------------------------------------------------------------------------

GOOD = {"problem": "1 + 1?", "answer": "2", "unique_id": "a"}


def test_data_error_is_a_corea_error_and_a_value_error():
    assert issubclass(DataError, CoreaError) and issubclass(DataError, ValueError)


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + '{"problem": "x", \n', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:3: invalid JSON")):
        read_dataset("math500", path)


@pytest.mark.parametrize(
    "row, message",
    [
        ({"problem": "q", "unique_id": "b"}, "missing field 'answer'"),
        ({"problem": "q", "answer": ["2"], "unique_id": "b"}, "field 'answer' must be a string"),
        ({"problem": "  ", "answer": "2", "unique_id": "b"}, "field 'problem' is empty"),
        ({"problem": 3, "answer": "2", "unique_id": "b"}, "field 'problem' must be a string"),
        (
            {"problem": "q", "answer": float("nan"), "unique_id": "b"},
            "field 'answer' is not a finite",
        ),
        ({"problem": "q", "answer": "2", "unique_id": "a"}, "duplicate id 'a' \\(first at .*:1\\)"),
    ],
)
def test_bad_field_names_file_line_and_field(tmp_path, row, message):
    path = write_jsonl(tmp_path / "rows.jsonl", [GOOD, row])
    with pytest.raises(DataError, match=re.escape(f"{path}:2: math500: ") + message):
        read_dataset("math500", path)


def test_non_object_and_bad_utf8_lines_are_named(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('["not", "an", "object"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:1: expected a JSON object, got list")):
        read_dataset("math500", path)
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        json.dumps(GOOD).encode() + b"\n" + '{"problem": "caf\xe9"}\n'.encode("latin-1")
    )
    with pytest.raises(DataError, match=re.escape(f"{path}:2: not valid UTF-8")):
        read_dataset("math500", path)


def test_empty_missing_and_unknown_files_are_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match=re.escape(f"{empty}: file is empty")):
        read_dataset("gsm8k", empty)
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n")
    with pytest.raises(DataError, match=re.escape(f"{blank}: file has no rows")):
        read_dataset("gsm8k", blank)
    with pytest.raises(DataError, match="missing.jsonl: file not found"):
        read_dataset("gsm8k", tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="no file matches this pattern"):
        read_dataset("gsm8k", str(tmp_path / "nothing-*.parquet"))
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DataError, match="unknown file type '.txt'"):
        read_dataset("gsm8k", tmp_path / "data.txt")
    with pytest.raises(DataError, match="unknown dataset 'mmlu'"):
        read_dataset("mmlu", tmp_path / "data.txt")
    with pytest.raises(DataError, match="on_error must be"):
        read_dataset("gsm8k", tmp_path / "data.txt", on_error="ignore")


def test_parquet_bad_row_is_named_by_row_number(tmp_path):
    rows = [{"question": "q1", "answer": "x\n#### 3"}, {"question": None, "answer": "#### 4"}]
    path = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(
        DataError, match=re.escape(f"{path}: row 2: gsm8k: missing field 'question'")
    ):
        read_dataset("gsm8k", path)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_dataset("gsm8k", tmp_path / "broken.parquet")


def test_olympiadbench_rows_with_images_are_rejected(tmp_path):
    row = {"id": 1, "question": "See <image_1>", "final_answer": ["2"], "image_1": "data:..."}
    with pytest.raises(DataError, match=":1: olympiadbench: has image_1: only .* text-only"):
        read_dataset("olympiadbench", write_jsonl(tmp_path / "mm.jsonl", [row]))


def test_gsm8k_and_commonsenseqa_specific_errors(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "no final line"}])
    with pytest.raises(DataError, match=":1: gsm8k: field 'answer' has no '#### <number>'"):
        read_dataset("gsm8k", path)
    base = {"id": "x", "question": "q", "choices": {"label": ["A", "B"], "text": ["a", "b"]}}
    path = write_jsonl(tmp_path / "c.jsonl", [{**base, "answerKey": ""}])
    with pytest.raises(DataError, match="an unlabelled test split"):
        read_dataset("commonsenseqa", path)
    gap = {**base, "choices": {"label": ["A", "C"], "text": ["a", "c"]}, "answerKey": "A"}
    with pytest.raises(DataError, match="without gaps"):
        read_dataset("commonsenseqa", write_jsonl(tmp_path / "d.jsonl", [gap]))


def test_skip_policy_counts_and_reports_skipped_rows(tmp_path, caplog):
    rows = [
        {"question": "q0", "answer": "#### 1"},
        {"question": "q1"},
        {"question": "q2", "answer": "#### 2"},
        {"question": "q3", "answer": "none"},
        {"question": "q4", "answer": "#### 1,234"},
    ]
    path = write_jsonl(tmp_path / "test.jsonl", rows)
    with pytest.raises(DataError, match=":2: gsm8k: missing field 'answer'"):
        read_dataset("gsm8k", path)
    with caplog.at_level(logging.WARNING):
        result = read_dataset("gsm8k", path, on_error="skip")
    assert [r.answer for r in result.records] == ["1", "2", "1234"]
    assert [s.where for s in result.skipped] == [f"{path}:2", f"{path}:4"]
    assert "missing field 'answer'" in result.skipped[0].reason
    assert "skipped 2 of 5 rows" in caplog.text
    all_bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q"}])
    with pytest.raises(DataError, match=r"no valid gsm8k rows \(1 skipped\)"):
        read_dataset("gsm8k", all_bad, on_error="skip")


def test_record_invariants_are_checked():
    with pytest.raises(DataError, match="kind must be one of"):
        Record("x", "q", "2", "essay")
    with pytest.raises(DataError, match="answer 'C' is not one of the letters AB"):
        Record("x", "q", "C", "choice", ("a", "b"))
    with pytest.raises(DataError, match="only choice questions have choices"):
        Record("x", "q", "2", "math", ("a", "b"))
    record = Record("x", "q", "B", "choice", ["a", "b"], {"k": 1})
    assert record.choices == ("a", "b") and record.answer_text == "b"
    assert record == Record("x", "q", "B", "choice", ("a", "b"), {"other": 2})

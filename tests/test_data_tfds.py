"""TFDS builders: built from local files into array_record, read back without TensorFlow."""

import csv
import json
import sys

import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from corea_jax.data import (  # noqa: E402
    DataError,
    Record,
    SyntheticTask,
    deepmath_split,
    index_batches,
    make_split,
    read_dataset,
)
from corea_jax.data.tfds_builders import (  # noqa: E402
    CoreaData,
    CoreaDataConfig,
    example_of,
    prepare,
    record_from_example,
    record_source,
)

SHIPPED = ["deepmath", "math500", "gsm8k", "olympiadbench", "aime24", "amc23", "commonsenseqa"]


def as_set(records):
    return {json.dumps(r.to_json(), sort_keys=True) for r in records}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    tfds.disable_progress_bar()
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def built(data_dir, shared_data):
    for name in SHIPPED:
        prepare(name, data_dir=data_dir, manual_dir=shared_data)
    return data_dir


@pytest.mark.parametrize("name", [n for n in SHIPPED if n != "deepmath"])
def test_benchmark_round_trips_through_array_record(name, built, shared_data):
    source = record_source(name, "test", data_dir=built)
    expected = read_dataset(name, shared_data / name).records
    assert len(source) == len(expected)
    assert as_set(source[:]) == as_set(expected)
    version = str(CoreaData.VERSION)
    assert list((built / "corea_data" / name / version).glob("*.array_record-*"))


def test_deepmath_splits_are_the_documented_split(built, shared_data):
    split = deepmath_split(read_dataset("deepmath", shared_data / "deepmath").records)
    train = record_source("deepmath", "train", data_dir=built)
    test = record_source("deepmath", "test", data_dir=built)
    assert (len(train), len(test)) == (2787, 500)  # train side of the 3,996-row subset (70% share)
    assert as_set(train[:]) == as_set(split.train)
    assert as_set(test[:]) == as_set(split.test)
    validation = record_source("deepmath", "validation", data_dir=built)
    assert as_set(validation[:]) == as_set(split.validation)


def test_builds_and_loads_without_tensorflow(built):
    assert "tensorflow" not in sys.modules
    source = tfds.data_source("corea_data/math500", split="test", data_dir=str(built))
    assert isinstance(source[0]["question"], bytes)  # raw examples; RecordSource decodes them


def test_custom_configs_synthetic_sizes_and_file_patterns(data_dir, tmp_path):
    task = SyntheticTask(seed=5, splits=(("train", 0.9), ("test", 0.1)), max_steps=2)
    config = CoreaDataConfig(
        name="synthetic_small",
        dataset="synthetic",
        synthetic_task=task,
        synthetic_sizes=(("train", 60), ("test", 20)),
    )
    builder = prepare(config, data_dir=data_dir)
    assert set(builder.info.splits) == {"train", "test"}
    for split, n in config.synthetic_sizes:
        assert as_set(record_source("synthetic_small", split, data_dir=data_dir)[:]) == as_set(
            make_split(task, split, n)
        )

    manual = tmp_path / "gpqa"
    manual.mkdir()
    columns = ["Record ID", "Question", "Correct Answer"] + [
        f"Incorrect Answer {k}" for k in (1, 2, 3)
    ]
    with (manual / "gpqa_diamond.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([f"r{i}", f"q{i}?", f"yes{i}", "no", "maybe", "never"] for i in range(8))
    config = CoreaDataConfig(
        name="gpqa_diamond", dataset="gpqa", files=("gpqa_diamond.csv",), choice_seed=3
    )
    prepare(config, data_dir=data_dir, manual_dir=manual)
    source = record_source("gpqa_diamond", "test", data_dir=data_dir)
    assert len(source) == 8 and all(r.answer_text.startswith("yes") for r in source)
    assert all(r.metadata["choice_seed"] == 3 for r in source)


def test_example_conversion_round_trips():
    choice = Record("c", "q", "B", "choice", ("x", "y"), {"k": [1, 2]})
    for record in make_split(SyntheticTask(), "train", 5) + (choice,):
        example = {
            k: v.encode() if isinstance(v, str) else v for k, v in example_of(record).items()
        }
        example["choices"] = [c.encode() for c in example["choices"]]
        back = record_from_example(example)
        assert back == record and dict(back.metadata) == dict(record.metadata)


def test_bad_prepare_calls_are_data_errors(data_dir, tmp_path):
    with pytest.raises(DataError, match="unknown config 'mmlu'"):
        prepare("mmlu", data_dir=data_dir, manual_dir=tmp_path)
    with pytest.raises(DataError, match="a manual_dir with the source files is needed"):
        prepare("math500", data_dir=data_dir)
    (tmp_path / "f.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match="manual_dir must be a directory"):
        prepare("math500", data_dir=data_dir, manual_dir=tmp_path / "f.jsonl")
    assert "synthetic" in [c.name for c in CoreaData.BUILDER_CONFIGS]


def test_grain_batches_over_a_tfds_source_resume_from_saved_state(built):
    source = record_source("commonsenseqa", "test", data_dir=built)
    batches = index_batches(len(source), batch_size=16, seed=7, num_batches=10).to_iter_dataset()
    it = iter(batches)
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [[source[int(i)].id for i in next(it)] for _ in range(2)]
    resumed = iter(batches)
    resumed.set_state(state)
    assert [[source[int(i)].id for i in next(resumed)] for _ in range(2)] == expected

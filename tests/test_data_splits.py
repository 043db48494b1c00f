"""The DeepMath16K / DeepMath500 split: sizes, disjointness, determinism, order independence."""

import random

import pytest

from corea_jax.data import DataError, Record, deepmath_split, question_key, read_dataset


@pytest.fixture(scope="module")
def deepmath(shared_data):
    return read_dataset("deepmath", shared_data / "deepmath").records


def keys(records):
    return {question_key(r.question) for r in records}


def test_shipped_subset_gives_500_test_and_the_rest_for_training(deepmath):
    split = deepmath_split(deepmath)
    assert len(split.test) == 500
    assert len(split.train) == len(deepmath) - 500 == 3496
    assert split.duplicates_dropped == 0
    assert not keys(split.train) & keys(split.test)
    assert keys(split.train) | keys(split.test) == keys(deepmath)


def test_split_ignores_row_order_and_changes_with_the_seed(deepmath):
    split = deepmath_split(deepmath, seed=0)
    shuffled = list(deepmath)
    random.Random(1).shuffle(shuffled)
    again = deepmath_split(shuffled, seed=0)
    assert again.test == split.test and again.train == split.train
    other = deepmath_split(deepmath, seed=1)
    assert keys(other.test) != keys(split.test)
    assert not keys(other.train) & keys(other.test)


def test_train_size_caps_the_training_set_and_adding_rows_keeps_test_questions_stable(deepmath):
    small = deepmath_split(deepmath, train_size=100, test_size=50)
    assert len(small.train) == 100 and len(small.test) == 50
    # A test question stays a test question when other rows are removed from the source (the
    # reverse, adding rows, can move it to training: see the splits module docstring).
    full = deepmath_split(deepmath, test_size=50)
    subset = deepmath[:2000]
    sub = deepmath_split(subset, test_size=50)
    assert keys(full.test) & keys(subset) <= keys(sub.test)


def test_duplicates_by_whitespace_normalised_text_are_dropped():
    rows = [
        Record("a", "What is  1+1?", "2", "math"),
        Record("b", "What is 1+1? ", "2", "math"),
        Record("c", "What is\n1+1?", "2", "math"),
    ] + [Record(f"q{i}", f"Question {i}", str(i), "math") for i in range(10)]
    split = deepmath_split(rows, train_size=100, test_size=3)
    assert split.duplicates_dropped == 2
    assert len(split.train) + len(split.test) == 11
    assert "b" not in {r.id for r in split.train + split.test}


def test_too_few_questions_is_an_error():
    rows = [Record(f"q{i}", f"Question {i}", str(i), "math") for i in range(5)]
    with pytest.raises(DataError, match="5 unique questions, but the test set alone needs 5"):
        deepmath_split(rows, test_size=5)
    with pytest.raises(DataError, match="must be positive"):
        deepmath_split(rows, train_size=0)

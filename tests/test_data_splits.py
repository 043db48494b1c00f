"""The DeepMath16K / DeepMath500 split: sizes, disjointness, determinism, order independence."""

import random

import pytest

from corea_jax.data import DataError, Record, deepmath_split, question_key, read_dataset
from corea_jax.data.splits import SplitConfig, side_of


@pytest.fixture(scope="module")
def deepmath(shared_data):
    return read_dataset("deepmath", shared_data / "deepmath").records


def keys(records):
    return {question_key(r.question) for r in records}


def test_shipped_subset_gives_500_test_questions_and_disjoint_sides(deepmath):
    split = deepmath_split(deepmath)
    assert len(split.test) == 500
    assert split.duplicates_dropped == 0
    sides = [keys(s) for s in (split.train, split.validation, split.calibration)]
    sides.append(keys(split.test))
    for i, a in enumerate(sides):
        for b in sides[i + 1 :]:
            assert not a & b
    # every side in roughly its share of the hash space (70 / 5 / 10 / 15 %)
    n = len(deepmath)
    assert abs(len(split.train) - 0.70 * n) < 0.03 * n
    assert abs(len(split.calibration) - 0.10 * n) < 0.02 * n


def test_split_ignores_row_order_and_changes_with_the_seed(deepmath):
    split = deepmath_split(deepmath, seed=0)
    shuffled = list(deepmath)
    random.Random(1).shuffle(shuffled)
    again = deepmath_split(shuffled, seed=0)
    assert again.test == split.test and again.train == split.train
    other = deepmath_split(deepmath, seed=1)
    assert keys(other.test) != keys(split.test)
    assert not keys(other.train) & keys(other.test)


def test_a_question_keeps_its_side_in_a_subset_and_in_a_superset(deepmath):
    """The contamination check: DeepMath500 of the shipped subset and of a larger file built
    from it are test-side questions of both, never training questions of either."""
    extra = [
        Record(f"new{i}", f"New question number {i}: what is {i} + {i}?", str(2 * i), "math")
        for i in range(20_000)
    ]
    superset = list(deepmath) + extra
    subset = list(deepmath)[:2000]
    parts = {
        name: deepmath_split(rows, test_size=50)
        for name, rows in (("shipped", deepmath), ("superset", superset), ("subset", subset))
    }
    for a in parts.values():
        for b in parts.values():
            assert not keys(a.test) & keys(b.train)
            assert not keys(a.test) & keys(b.validation)
            assert not keys(a.train) & keys(b.calibration)
    test_side = lambda rows: {  # noqa: E731
        question_key(r.question) for r in rows if side_of(r.question) == "test"
    }
    assert keys(parts["shipped"].test) <= test_side(superset)
    assert keys(parts["superset"].test) <= test_side(superset)
    # the side is the question's own: the same text reads the same side anywhere
    assert all(side_of(r.question) == side_of("  " + r.question + "\n") for r in subset[:50])


def test_train_size_caps_the_training_set(deepmath):
    small = deepmath_split(deepmath, train_size=100, test_size=50)
    assert len(small.train) == 100 and len(small.test) == 50
    full = deepmath_split(deepmath, test_size=50)
    assert small.train == full.train[:100] and small.test == full.test


def test_duplicates_by_whitespace_normalised_text_are_dropped():
    rows = [
        Record("a", "What is  1+1?", "2", "math"),
        Record("b", "What is 1+1? ", "2", "math"),
        Record("c", "What is\n1+1?", "2", "math"),
    ] + [Record(f"q{i}", f"Question {i}", str(i), "math") for i in range(10)]
    split = deepmath_split(rows, train_size=100, test_size=1, config=SplitConfig(test=0.5))
    assert split.duplicates_dropped == 2
    sides = (split.train, split.validation, split.calibration)
    assert sum(len(s) for s in sides) + len(split.test) <= 11
    assert "b" not in {r.id for r in split.train + split.test}


def test_too_few_questions_is_an_error():
    rows = [Record(f"q{i}", f"Question {i}", str(i), "math") for i in range(5)]
    with pytest.raises(DataError, match="5 unique questions give .* the test set needs 5"):
        deepmath_split(rows, test_size=5)
    with pytest.raises(DataError, match="must be positive"):
        deepmath_split(rows, train_size=0)
    with pytest.raises(DataError, match="leave some for train"):
        SplitConfig(test=0.5, calibration=0.5)

"""The DeepMath16K / DeepMath500 split: a seeded, documented stand-in for the paper's split.

The paper trains on "DeepMath16K" (about 16K questions from DeepMath-103K) and tests in-domain on
"DeepMath500"; the exact split was not published [open]. Ours:

  1. Questions are deduplicated by their text with runs of whitespace collapsed and the ends
     stripped (`question_key`); the first occurrence in read order is kept.
  2. The unique questions are ordered by sha256(f"{seed}|{question_key}"), a per-question
     pseudo-random rank, so the split depends only on the set of questions and the seed - not on
     row order, sharding or file format.
  3. The first `test_size` (default 500) questions form the test set; the next `train_size`
     (default 16,000, fewer when the source is smaller) form the training set.

Because the test set is "the 500 best-ranked questions of whatever was read", it depends on the
whole set: removing rows keeps a test question on the test side, but *adding* rows can push it
out (a new, better-ranked question takes its place and it becomes a training question), and the
3,996-row subset and the full DeepMath-103K give different test sets. Split both training and
evaluation from the same file. (A split by a fixed threshold on each question's own hash, which
never moves a question, is tracked in issue 16.)

Train and test are disjoint by question text by construction. On the 3,996-row subset in
`shared/data/deepmath` this gives 500 test and 3,496 training questions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable

from corea_jax.data.records import DataError, Record

DEEPMATH_TRAIN_SIZE = 16_000
DEEPMATH_TEST_SIZE = 500
_SPACE = re.compile(r"\s+")


def question_key(question: str) -> str:
    """The text two questions are compared by: whitespace runs collapsed, ends stripped."""
    return _SPACE.sub(" ", question).strip()


def hash_rank(seed: int, key: str) -> str:
    """A seeded, platform-independent pseudo-random sort key for `key`."""
    return hashlib.sha256(f"{seed}|{key}".encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class TrainTestSplit:
    train: tuple[Record, ...]
    test: tuple[Record, ...]
    duplicates_dropped: int


def deepmath_split(
    records: Iterable[Record],
    *,
    train_size: int = DEEPMATH_TRAIN_SIZE,
    test_size: int = DEEPMATH_TEST_SIZE,
    seed: int = 0,
) -> TrainTestSplit:
    """Splits DeepMath records into DeepMath16K-style train and DeepMath500-style test sets.

    Args:
      records: DeepMath records (any order; duplicates by `question_key` are dropped).
      train_size: [open] at most this many training questions (default 16,000).
      test_size: [open] exactly this many test questions (default 500).
      seed: [open] the split seed (default 0).

    Returns both sets, each in hash-rank order, and the number of duplicate rows dropped.
    Raises `DataError` when fewer than `test_size + 1` unique questions are given.
    """
    if train_size < 1 or test_size < 1:
        raise DataError(f"train_size and test_size must be positive, got {train_size}, {test_size}")
    unique: dict[str, Record] = {}
    total = 0
    for record in records:
        total += 1
        unique.setdefault(question_key(record.question), record)
    if len(unique) <= test_size:
        raise DataError(
            f"deepmath split: {len(unique)} unique questions, but the test set alone needs "
            f"{test_size} and the training set at least one more"
        )
    ranked = sorted(unique, key=lambda key: hash_rank(seed, key))
    test = tuple(unique[k] for k in ranked[:test_size])
    train = tuple(unique[k] for k in ranked[test_size : test_size + train_size])
    return TrainTestSplit(train=train, test=test, duplicates_dropped=total - len(unique))

"""Splits that cannot leak: a question's side is a function of its own text and a seed.

The paper trains on "DeepMath16K" (about 16K questions from DeepMath-103K) and tests in-domain on
"DeepMath500"; the exact split was not published [open]. Ours, for every source:

  1. A question is identified by its normalised text (`question_key`: Unicode NFKC, runs of
     whitespace collapsed, ends stripped); duplicates keep their first occurrence.
  2. Its *side* is decided by `u = sha256(f"corea-split|{seed}|{key}")` in [0, 1): test
     when u < test, calibration when u < test + calibration, validation when below the next
     threshold, train otherwise (`SplitConfig`, default 15% / 10% / 5% / 70%). No rank and no
     row id takes part, so a question is on the same side whichever file, subset, shard or
     order it is read from: the 3,996-row subset in `shared/data/deepmath` and the full
     DeepMath-103K agree on every question they share.
  3. DeepMath500 is the first `test_size` (500) test-side questions in hash order, DeepMath16K
     the first `train_size` (16,000) train-side ones. Those *selections* depend on which file
     was read (a larger file has more test-side questions to choose from), but never their
     side: no DeepMath500 question of either file is a training question of the other.

Validation is where settings are tuned and the trainer's periodic evaluation runs; calibration
is where the cascade picks tau; test is reported once. Changing the fractions or the seed moves
questions between sides: a run's config records both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata
from collections.abc import Iterable

from corea_jax.data.records import DataError, Record

DEEPMATH_TRAIN_SIZE = 16_000
DEEPMATH_TEST_SIZE = 500
SIDES = ("train", "validation", "calibration", "test")
_SPACE = re.compile(r"\s+")


def question_key(question: str) -> str:
    """The text two questions are compared by: NFKC, whitespace runs collapsed, ends stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", question)).strip()


def hash_unit(seed: int, key: str) -> float:
    """A seeded, platform-independent pseudo-random number in [0, 1) for `key`."""
    # Salted, so it is unrelated to any other seeded hash of the same text (e.g. the simulated
    # LLM's right/wrong draw, sha256(f"{seed}|{question}")).
    digest = hashlib.sha256(f"corea-split|{seed}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """[open] The share of the hash space each side takes; train gets the rest."""

    seed: int = 0
    test: float = 0.15
    calibration: float = 0.10
    validation: float = 0.05

    def __post_init__(self):
        shares = (self.test, self.calibration, self.validation)
        if min(shares) < 0 or sum(shares) >= 1:
            raise DataError(
                f"split: test, calibration and validation shares must be >= 0 and leave some "
                f"for train, got {shares}"
            )


def side_of(question: str, config: SplitConfig = SplitConfig()) -> str:
    """The side ("train", "validation", "calibration" or "test") of one question."""
    u = hash_unit(config.seed, question_key(question))
    for side, upper in (
        ("test", config.test),
        ("calibration", config.test + config.calibration),
        ("validation", config.test + config.calibration + config.validation),
    ):
        if u < upper:
            return side
    return "train"


def split_records(
    records: Iterable[Record], config: SplitConfig = SplitConfig()
) -> tuple[dict[str, tuple[Record, ...]], int]:
    """`({side: records in hash order}, duplicates dropped)` for every side of `SIDES`."""
    unique: dict[str, Record] = {}
    total = 0
    for record in records:
        total += 1
        unique.setdefault(question_key(record.question), record)
    keyed = sorted((hash_unit(config.seed, k), k) for k in unique)
    sides: dict[str, list[Record]] = {side: [] for side in SIDES}
    for _, key in keyed:
        sides[side_of(unique[key].question, config)].append(unique[key])
    return {side: tuple(rs) for side, rs in sides.items()}, total - len(unique)


@dataclasses.dataclass(frozen=True)
class TrainTestSplit:
    """DeepMath16K (`train`), DeepMath500 (`test`) and the other two sides, in hash order."""

    train: tuple[Record, ...]
    test: tuple[Record, ...]
    duplicates_dropped: int
    validation: tuple[Record, ...] = ()
    calibration: tuple[Record, ...] = ()


def deepmath_split(
    records: Iterable[Record],
    *,
    train_size: int = DEEPMATH_TRAIN_SIZE,
    test_size: int = DEEPMATH_TEST_SIZE,
    seed: int = 0,
    config: SplitConfig | None = None,
) -> TrainTestSplit:
    """DeepMath16K-style train and DeepMath500-style test sets (see the module docstring).

    Args:
      records: DeepMath records (any order; duplicates by `question_key` are dropped).
      train_size: [open] at most this many training questions (default 16,000).
      test_size: [open] exactly this many test questions (default 500).
      seed: [open] the split seed (default 0); ignored when `config` is given.
      config: the side shares (default `SplitConfig(seed=seed)`).

    Raises `DataError` when the test side has fewer than `test_size` questions or the train
    side is empty.
    """
    if train_size < 1 or test_size < 1:
        raise DataError(f"train_size and test_size must be positive, got {train_size}, {test_size}")
    config = SplitConfig(seed=seed) if config is None else config
    sides, dropped = split_records(records, config)
    if len(sides["test"]) < test_size or not sides["train"]:
        total = sum(len(s) for s in sides.values())
        raise DataError(
            f"deepmath split: {total} unique questions give {len(sides['test'])} on the test "
            f"side (share {config.test}) and {len(sides['train'])} on the train side; the test "
            f"set needs {test_size} and the training set at least one"
        )
    return TrainTestSplit(
        train=sides["train"][:train_size],
        test=sides["test"][:test_size],
        duplicates_dropped=dropped,
        validation=sides["validation"],
        calibration=sides["calibration"],
    )

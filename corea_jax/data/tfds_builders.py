"""TFDS builders for every dataset, built from local files into array_record (no TensorFlow).

One `GeneratorBasedBuilder`, `CoreaData` (TFDS name "corea_data"), with one config per dataset:
"deepmath" (splits "train" = DeepMath16K-style, "validation" (tuning, in-training evaluation) and
"test" = DeepMath500-style, see `splits.py`),
"math500", "gsm8k", "olympiadbench", "aime24", "amc23", "commonsenseqa", "gpqa" (split "test"),
and "synthetic" (splits "train", "calibration", "test"; generated, no files).

Nothing is downloaded: the source files are read from TFDS's manual directory, which must be a
directory holding the dataset's usual file names (or `<dir>/<dataset>/...`, so `shared/data`
itself works), or the patterns in `CoreaDataConfig.files`. The files are written in the
array_record format, which TFDS writes and `tfds.data_source` reads without TensorFlow; the
plain readers (`read_dataset`) remain the way to read data without TFDS.

    prepare("math500", manual_dir="shared/data", data_dir="/tmp/tfds")
    source = record_source("math500", "test", data_dir="/tmp/tfds")   # Sequence[Record]

Each example stores the `Record` fields; `metadata` is canonical JSON text, because its keys differ
per dataset. TFDS orders examples by a hash of their key, so a split read back holds the same
records as the reader gives, in a different order. A prepared dataset is reused as is: remove
`<data_dir>/corea_data/<config>` (or use another data_dir) after changing the source files.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

from corea_jax.data import readers, rows, splits, synthetic
from corea_jax.data.records import DataError, Record, metadata_json

FILE_FORMAT = "array_record"
SYNTHETIC_SIZES = (("train", 4000), ("calibration", 500), ("test", 500))


@dataclasses.dataclass(eq=False)
class CoreaDataConfig(tfds.core.BuilderConfig):
    """One dataset, with the options that change what is written.

    Attributes:
      dataset: a key of `readers.DATASETS`, or "synthetic".
      files: glob patterns relative to the manual directory; empty = the dataset's defaults.
      choice_seed: GPQA option shuffle seed (see `readers.ReadOptions`).
      split_seed / train_size / test_size: the DeepMath split (see `splits.deepmath_split`).
      synthetic_task / synthetic_sizes: the synthetic task and the size of each of its splits
        [open: 4000 / 500 / 500 by default].
    """

    dataset: str = ""
    files: tuple[str, ...] = ()
    choice_seed: int = 0
    split_seed: int = 0
    train_size: int = splits.DEEPMATH_TRAIN_SIZE
    test_size: int = splits.DEEPMATH_TEST_SIZE
    synthetic_task: synthetic.SyntheticTask = synthetic.SyntheticTask()
    synthetic_sizes: tuple[tuple[str, int], ...] = SYNTHETIC_SIZES


def _features() -> tfds.features.FeaturesDict:
    text = tfds.features.Text
    return tfds.features.FeaturesDict(
        {
            "id": text(),
            "question": text(),
            "answer": text(),
            "kind": text(),
            "choices": tfds.features.Sequence(text()),
            "metadata": text(),
        }
    )


class CoreaData(tfds.core.GeneratorBasedBuilder):
    """COREA's benchmarks and synthetic task as TFDS datasets (see the module docstring)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "DeepMath: sides by a hash threshold on each question; a validation split.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put the dataset's files (as in shared/data/<dataset>/ or a Hugging Face snapshot) in a "
        "directory and pass it as the manual directory; nothing is downloaded."
    )
    BUILDER_CONFIGS = [
        CoreaDataConfig(name=name, dataset=name, description=f"{name} from local files")
        for name in readers.DATASETS
    ] + [CoreaDataConfig(name="synthetic", dataset="synthetic", description="synthetic task")]

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS's own lookup of this file needs the `importlib_resources` backport for builders
        # defined inside a package; the answer it would find is simply this module's path.
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=_features(),
        )

    def _split_generators(self, dl_manager):
        config: CoreaDataConfig = self.builder_config
        if config.dataset == "synthetic":
            return {
                split: self._generate_examples(
                    synthetic.make_split(config.synthetic_task, split, n)
                )
                for split, n in config.synthetic_sizes
            }
        if config.dataset not in readers.DATASETS:
            raise DataError(
                f"corea_data config {config.name!r}: unknown dataset {config.dataset!r}"
            )
        manual_dir = Path(dl_manager.manual_dir)
        source = (
            rows.expand_paths([str(manual_dir / p) for p in config.files])
            if config.files
            else manual_dir
        )
        result = readers.read_dataset(
            config.dataset, source, options=readers.ReadOptions(choice_seed=config.choice_seed)
        )
        if config.dataset == "deepmath":
            split = splits.deepmath_split(
                result.records,
                train_size=config.train_size,
                test_size=config.test_size,
                seed=config.split_seed,
            )
            return {
                "train": self._generate_examples(split.train),
                "validation": self._generate_examples(split.validation),
                "test": self._generate_examples(split.test),
            }
        return {"test": self._generate_examples(result.records)}

    def _generate_examples(self, records: Sequence[Record]) -> Iterator[tuple[int, dict]]:
        for index, record in enumerate(records):
            yield index, example_of(record)


def example_of(record: Record) -> dict[str, Any]:
    """The TFDS example dict of a record."""
    return {
        "id": record.id,
        "question": record.question,
        "answer": record.answer,
        "kind": record.kind,
        "choices": list(record.choices),
        "metadata": metadata_json(record.metadata),
    }


def record_from_example(example: Mapping[str, Any]) -> Record:
    """Inverse of `example_of`, for examples as `tfds.data_source` returns them (bytes)."""

    def text(value) -> str:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    return Record(
        id=text(example["id"]),
        question=text(example["question"]),
        answer=text(example["answer"]),
        kind=text(example["kind"]),
        choices=tuple(text(c) for c in example["choices"]),
        metadata=json.loads(text(example["metadata"])),
    )


def _config(name_or_config: str | CoreaDataConfig) -> str | CoreaDataConfig:
    known = [c.name for c in CoreaData.BUILDER_CONFIGS]
    if isinstance(name_or_config, str) and name_or_config not in known:
        raise DataError(f"corea_data: unknown config {name_or_config!r}; known: {known}")
    return name_or_config


def prepare(
    name_or_config: str | CoreaDataConfig,
    *,
    data_dir: str | Path,
    manual_dir: str | Path | None = None,
) -> CoreaData:
    """Builds (once) the TFDS dataset for a config, reading source files from `manual_dir`.

    `manual_dir` is needed for everything but "synthetic". Returns the builder, whose
    `as_data_source(split)` gives random access without TensorFlow.
    """
    config = _config(name_or_config)
    builder = CoreaData(config=config, data_dir=str(data_dir), file_format=FILE_FORMAT)
    dataset = config if isinstance(config, str) else config.dataset
    if manual_dir is None and dataset != "synthetic":
        raise DataError(f"corea_data/{dataset}: a manual_dir with the source files is needed")
    if manual_dir is not None and not Path(manual_dir).is_dir():
        raise DataError(f"{manual_dir}: manual_dir must be a directory holding the source files")
    download_config = tfds.download.DownloadConfig(
        manual_dir=str(manual_dir) if manual_dir is not None else None
    )
    builder.download_and_prepare(download_config=download_config)
    return builder


class RecordSource(Sequence):
    """A random-access `Sequence[Record]` over a prepared TFDS split (a grain data source)."""

    def __init__(self, examples: Sequence[Mapping[str, Any]]):
        self._examples = examples

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if not -n <= index < n:  # array_record raises ValueError; Sequence needs IndexError
            raise IndexError(f"record index {index} out of range for {n} records")
        return record_from_example(self._examples[index % n])

    def __iter__(self) -> Iterator[Record]:
        for index in range(len(self)):
            yield self[index]


def record_source(name: str, split: str, *, data_dir: str | Path) -> RecordSource:
    """Records of a prepared split, read through `tfds.data_source` (no TensorFlow)."""
    return RecordSource(
        tfds.data_source(
            f"corea_data/{name}",
            split=split,
            data_dir=str(data_dir),
            download=False,
            builder_kwargs={"file_format": FILE_FORMAT},
        )
    )

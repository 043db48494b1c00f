"""The data layer: benchmark readers, the DeepMath split, prompts, the synthetic task, TFDS, grain.

  records.py        Record (id, question, answer, kind, choices, metadata), DataError
  rows.py           rows out of JSONL / JSON / Parquet / CSV files, each with file:line
  readers.py        read_dataset(name, source) for the eight benchmarks, DATASETS
  splits.py         deepmath_split: the seeded DeepMath16K / DeepMath500 stand-in
  prompts.py        PromptTemplates, render_prompt / encode_prompt via the chat template
  synthetic.py      SyntheticTask, make_split, reference_completion, warmup_confidence
  tfds_builders.py  the CoreaData TFDS builder (array_record, no TensorFlow), record_source
  pipeline.py       index_batches: the training data order (grain), resumable state

`tfds_builders` and `pipeline` import tensorflow-datasets and grain, which take a second to
import; their names are loaded on first use so that reading a file does not pay for them.
"""

from __future__ import annotations

import importlib

from corea_jax.data.prompts import (
    DEFAULT_SYSTEM,
    PromptTemplates,
    encode_prompt,
    format_choices,
    render_prompt,
)
from corea_jax.data.readers import (
    DATASETS,
    DatasetSpec,
    ReadOptions,
    ReadResult,
    SkippedRow,
    dataset_files,
    gpqa_permutation,
    read_dataset,
)
from corea_jax.data.records import ANSWER_KINDS, AnswerKind, DataError, Record
from corea_jax.data.rows import iter_rows
from corea_jax.data.splits import TrainTestSplit, deepmath_split, question_key
from corea_jax.data.synthetic import (
    SYNTHETIC_PROMPTS,
    Problem,
    SyntheticTask,
    make_split,
    problem_of,
    reference_completion,
    warmup_confidence,
)

_LAZY = {
    "CoreaData": "tfds_builders",
    "CoreaDataConfig": "tfds_builders",
    "RecordSource": "tfds_builders",
    "prepare": "tfds_builders",
    "record_source": "tfds_builders",
    "record_from_example": "tfds_builders",
    "epoch_order": "pipeline",
    "index_batches": "pipeline",
}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"corea_jax.data.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'corea_jax.data' has no attribute {name!r}")


__all__ = [
    "ANSWER_KINDS",
    "DATASETS",
    "DEFAULT_SYSTEM",
    "SYNTHETIC_PROMPTS",
    "AnswerKind",
    "DataError",
    "DatasetSpec",
    "Problem",
    "PromptTemplates",
    "ReadOptions",
    "ReadResult",
    "Record",
    "SkippedRow",
    "SyntheticTask",
    "TrainTestSplit",
    "dataset_files",
    "deepmath_split",
    "encode_prompt",
    "format_choices",
    "gpqa_permutation",
    "iter_rows",
    "make_split",
    "problem_of",
    "question_key",
    "read_dataset",
    "reference_completion",
    "warmup_confidence",
    "render_prompt",
    *_LAZY,
]

"""The questions a run trains and evaluates on, from the config's `data` section, as a `Task`.

Sources: the synthetic task (generated; SFT reference traces included), a benchmark file read
by `corea_jax.data.read_dataset` (`data.path`), or a prepared TFDS directory (`data.tfds_dir`,
see `corea_jax.data.tfds_builders.prepare`), which holds the same records in TFDS's own order
(so a run from it sees another data order than a run from the files).

Splits. Synthetic: "eval" is its "calibration" split of `eval_size` questions. DeepMath: "eval"
is the first `eval_size` questions of the *validation* side of our split (TFDS: its
"validation" split), never DeepMath500 (the test side), so nothing is tuned by watching the test
questions. Other sources: the first `eval_size` records (point `data.path` at a held-out file).
"""

from __future__ import annotations

from pathlib import Path

from corea_jax.data import prompts as prompt_lib
from corea_jax.data import synthetic
from corea_jax.data.readers import read_dataset
from corea_jax.data.splits import deepmath_split
from corea_jax.errors import CoreaError
from corea_jax.rl.rollout import Task
from corea_jax.scoring.score import ScoreItem


def check_data_source(data) -> None:
    """Fails fast (before a large checkpoint is loaded) when a file source has no file."""
    if data.source == "synthetic" or data.get("tfds_dir", ""):
        return
    if not data.path:
        raise CoreaError(f"data.path: needed for data.source={data.source!r}")
    if not Path(data.path).exists():
        raise CoreaError(f"data.path: {data.path}: no such file or directory")


# The TFDS splits a run trains and evaluates on; the other datasets have one ("test").
TFDS_SPLITS = {"synthetic": ("train", "calibration"), "deepmath": ("train", "validation")}


def _tfds_records(data, split: str, eval_size: int) -> list:
    """The records of a prepared TFDS directory, cut as the file sources are cut."""
    # Imported here: tensorflow-datasets takes seconds to import and only this source needs it.
    from corea_jax.data.tfds_builders import record_source

    train_split, eval_split = TFDS_SPLITS.get(data.source, ("test", "test"))
    name = train_split if split == "train" else eval_split
    records = list(record_source(data.source, name, data_dir=data.tfds_dir))
    if split == "train":
        return records[: data.train_size] if data.source == "synthetic" else records
    return records[:eval_size]


def record_level(record) -> str | None:
    """A question's difficulty level as a metric-key-safe name, or None.

    Synthetic records: "<steps>x<digits>" (e.g. "2x3": two operations on 3-digit numbers,
    `synthetic.make_split`'s metadata). Others: their metadata's "level" (MATH500's "Level 3"
    -> "Level_3"), else None.
    """
    meta = record.metadata or {}
    if "steps" in meta and "digits" in meta:
        return f"{int(meta['steps'])}x{int(meta['digits'])}"
    level = meta.get("level")
    if level is None or str(level).strip() == "":
        return None
    return "_".join(str(level).replace("/", " ").split())


def build_task(
    data,
    tokenizer,
    split: str = "train",
    *,
    eval_size: int,
    sft_confidence: float,
    sft_random_confidence: float,
) -> Task:
    """The prompts (chat-template encoded) and score items of `split` ("train" or "eval").

    `data` is the config's data section; `sft_confidence` / `sft_random_confidence` decide the
    confidence the synthetic task's SFT reference traces state (`synthetic.warmup_confidence`).
    """
    references = None
    if data.get("tfds_dir", ""):
        records = _tfds_records(data, split, eval_size)
        templates = (
            synthetic.SYNTHETIC_PROMPTS
            if data.source == "synthetic"
            else prompt_lib.PromptTemplates()
        )
    elif data.source == "synthetic":
        task = synthetic.SyntheticTask(**data.synthetic.to_dict())
        records = synthetic.make_split(
            task,
            "train" if split == "train" else "calibration",
            data.train_size if split == "train" else eval_size,
        )
        templates = synthetic.SYNTHETIC_PROMPTS
    else:
        records = read_dataset(data.source, data.path).records
        if data.source == "deepmath":
            parts = deepmath_split(records, train_size=data.train_size)
            records = parts.train if split == "train" else parts.validation[:eval_size]
        elif split != "train":
            records = records[:eval_size]
        templates = prompt_lib.PromptTemplates()
    if data.source == "synthetic":
        references = [
            synthetic.reference_completion(
                r, synthetic.warmup_confidence(r, sft_confidence, sft_random_confidence)
            )
            for r in records
        ]
    levels = [record_level(r) for r in records]
    return Task(
        prompts=[prompt_lib.encode_prompt(r, tokenizer, templates) for r in records],
        items=[ScoreItem.from_record(r) for r in records],
        references=references,
        levels=levels if any(lv is not None for lv in levels) else None,
    )


def scratch_texts(data) -> list[str]:
    """Text to train a from-scratch model's tokenizer on: synthetic questions and traces."""
    task = synthetic.SyntheticTask(**data.synthetic.to_dict())
    records = synthetic.make_split(task, "train", min(data.train_size, 2000))
    return [r.question for r in records] + [
        synthetic.reference_completion(r, c) for r in records for c in (0.1, 0.5, 0.9)
    ]

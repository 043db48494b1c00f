"""The training task: prompts plus each question's ScoreItem (choices included), from the
synthetic task, a benchmark file or a prepared TFDS directory."""

import json

import ml_collections
import pytest
from tiny_models import make_tokenizer

from corea_jax.data import PromptTemplates, encode_prompt, read_dataset
from corea_jax.errors import CoreaError
from corea_jax.rl.task import build_task, check_data_source, scratch_texts
from corea_jax.scoring.score import ScoreItem

CHOICES = ["bank", "library", "mall"]


def _row(i):
    return {
        "id": f"q{i}",
        "answerKey": "ABC"[i % 3],
        "question": {
            "stem": f"Where is thing {i}?",
            "choices": [{"label": c, "text": t} for c, t in zip("ABC", CHOICES, strict=True)],
        },
    }


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(make_tokenizer(tmp_path_factory.mktemp("tok")))


@pytest.fixture(scope="module")
def choice_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("csqa")
    rows = [json.dumps(_row(i)) for i in range(6)]
    (folder / "dev_rand_split.jsonl").write_text("\n".join(rows) + "\n")
    return folder


def _data(**kwargs):
    synthetic = dict(seed=0, min_steps=1, max_steps=3, min_digits=1, max_digits=3)
    base = dict(source="synthetic", path="", tfds_dir="", train_size=12, synthetic=synthetic)
    return ml_collections.ConfigDict({**base, **kwargs})


def _build(data, tokenizer, split="train"):
    return build_task(data, tokenizer, split, eval_size=4, sft_confidence=0.9,
                      sft_random_confidence=0.0)  # fmt: skip


def test_synthetic_task_carries_items_and_references(tokenizer):
    task = _build(_data(), tokenizer)
    assert len(task.prompts) == len(task.items) == len(task.references) == 12
    assert all(i.kind == "numeric" and i.choices is None for i in task.items)
    assert all(r.endswith("<confidence>0.90</confidence>") for r in task.references)
    assert len(_build(_data(), tokenizer, "eval").items) == 4
    # Each question's level, steps x digits, for the per-level training metrics.
    assert task.levels[:3] == ["1x1", "1x2", "1x3"] and len(task.levels) == 12


def test_choice_questions_carry_their_options(tokenizer, choice_dir):
    data = _data(source="commonsenseqa", path=str(choice_dir / "dev_rand_split.jsonl"))
    task = _build(data, tokenizer)
    records = read_dataset("commonsenseqa", data.path).records
    assert task.items == [ScoreItem.from_record(r) for r in records]
    assert task.items[1] == ScoreItem("B", "choice", tuple(zip("ABC", CHOICES, strict=True)))
    assert task.prompts[0] == encode_prompt(records[0], tokenizer, PromptTemplates())
    assert task.references is None
    assert len(_build(data, tokenizer, "eval").items) == 4  # the first eval_size


def test_a_prepared_tfds_directory_is_a_source(tokenizer, choice_dir, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from corea_jax.data.tfds_builders import prepare

    tfds.disable_progress_bar()
    prepare("commonsenseqa", manual_dir=choice_dir, data_dir=tmp_path)
    from_files = _build(_data(source="commonsenseqa", path=str(choice_dir)), tokenizer)
    from_tfds = _build(_data(source="commonsenseqa", tfds_dir=str(tmp_path)), tokenizer)
    key = lambda t: sorted(zip(map(tuple, t.prompts), t.items, strict=True))  # noqa: E731
    assert key(from_tfds) == key(from_files)  # the same questions, in TFDS's order
    check_data_source(_data(source="commonsenseqa", tfds_dir=str(tmp_path)))  # no path needed


def test_file_sources_need_an_existing_path(tmp_path):
    check_data_source(_data())
    with pytest.raises(CoreaError, match="data.path: needed for data.source='gsm8k'"):
        check_data_source(_data(source="gsm8k"))
    with pytest.raises(CoreaError, match="no such file or directory"):
        check_data_source(_data(source="gsm8k", path=str(tmp_path / "no")))


def test_scratch_texts_cover_questions_and_traces():
    texts = scratch_texts(_data())
    assert len(texts) == 12 * 4 and texts[12 + 1].endswith("<confidence>0.50</confidence>")


def test_deepmath_evaluates_on_the_validation_side_never_the_test_side(tokenizer, shared_data):
    from corea_jax.data.splits import side_of

    path = shared_data / "deepmath" / "deepmath103k_subset.jsonl"
    data = _data(source="deepmath", path=str(path), train_size=50)
    records = {r.answer + "|" + r.question: r for r in read_dataset("deepmath", path).records}
    by_prompt = {tuple(encode_prompt(r, tokenizer, PromptTemplates())): r for r in records.values()}
    for split, side in (("train", "train"), ("eval", "validation")):
        task = _build(data, tokenizer, split)
        assert all(side_of(by_prompt[tuple(p)].question) == side for p in task.prompts)

"""Step 1 of the cascade: the SLM answers every question, once, and the answers are cached.

`load_questions` reads the configured datasets (`QuestionSource`); `slm_model_dir` finds the SLM
(`SLMConfig.path`, or a tiny random model built for smoke runs); `SLMAnswerer.answer` samples one
completion per question with the batched KV-cache sampler and keeps, per question, the text, the
token counts (for cost) and the mean token probability (the AvgProb signal, from the sampler's
log-probs under the model at temperature 1). The caller scores the texts with
`corea_jax.scoring.score.score_texts`, the project's one scoring path.

The cache: `DIR/NAME.jsonl`, one row per question, rewritten atomically (temporary file, then
`os.replace`) after every batch. Batches are fixed slices of the dataset in read order, and a
batch is sampled only when one of its questions has no cached row under the current *run key*
(model directory and weights, dtype, sampling settings, prompt tokens); batch k always uses seed
`seed + k`, so a resumed run gives the same answers as an uninterrupted one, even when sampling.
A finished dataset is never sampled again; changing a sampling setting or the model re-samples.

Departures / [open] choices: one sample per question (the paper's pass@1 protocol); AvgProb is
the arithmetic mean of the per-token probabilities (`sweep.mean_token_probability`), stored with
the geometric one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from corea_jax.atomic_files import write_atomic
from corea_jax.errors import CoreaError
from corea_jax.progress import progress

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class QuestionSource:
    """One dataset to evaluate.

    Attributes:
      name: the label in reports and file names (e.g. "deepmath500").
      reader: a reader of `corea_jax.data.read_dataset` ("math500", "gsm8k", "deepmath", ...)
        or "synthetic".
      path: its file or directory ("" for synthetic; for GPQA "" skips it with a message).
      split: for "deepmath" the side of `deepmath_split` ("test" = DeepMath500); for
        "synthetic" the split of `make_split`; ignored otherwise.
      limit: keep the first `limit` questions (0 = all).
    """

    name: str
    reader: str
    path: str = ""
    split: str = "test"
    limit: int = 0


def load_questions(sources: Sequence[QuestionSource], synthetic_seed: int = 0) -> dict:
    """`{name: (records, templates)}` for every source that can be read.

    A missing or malformed file raises the data layer's one-line error (it names the file); a
    GPQA source without a path is skipped with a note on stderr, since GPQA is not redistributed.
    """
    from corea_jax.data import PromptTemplates, deepmath_split, read_dataset, synthetic

    out = {}
    for src in sources:
        if src.limit < 0:
            raise CoreaError(f"datasets.{src.name}.limit={src.limit}: must be >= 0")
        if src.reader == "synthetic":
            task = synthetic.SyntheticTask(seed=synthetic_seed)
            records = _distinct_problems(synthetic.make_split(task, src.split, src.limit or 100))
            templates = synthetic.SYNTHETIC_PROMPTS
        else:
            if not src.path:
                if src.reader == "gpqa":
                    print(
                        f"corea-jax: skipping {src.name}: no path set. GPQA is not redistributed "
                        "(see shared/data/gpqa/SCHEMA.md); get gpqa_main.csv from its authors "
                        f"and pass --config.datasets.{src.name}.path=FILE.csv",
                        file=sys.stderr,
                    )
                    continue
                raise CoreaError(f"datasets.{src.name}.path: empty; set the dataset's file")
            if not Path(src.path).exists():
                raise CoreaError(f"datasets.{src.name}.path: {src.path}: no such file or directory")
            records = read_dataset(src.reader, src.path).records
            if src.reader == "deepmath":
                split = deepmath_split(records)
                if src.split not in ("train", "test"):
                    raise CoreaError(f"datasets.{src.name}.split={src.split!r}: train or test")
                records = getattr(split, src.split)
            templates = PromptTemplates()
        if src.limit:
            records = records[: src.limit]
        out[src.name] = (tuple(records), templates)
    if not out:
        raise CoreaError("datasets: nothing to evaluate (every dataset was skipped)")
    return out


def _distinct_problems(records) -> tuple:
    """The synthetic records with each problem once (the first asking of it): the task's easiest
    levels have few problems and `make_split` repeats them once they run out, which would weigh
    those questions many times in every figure."""
    from corea_jax.data import synthetic

    seen, out = set(), []
    for r in records:
        key = synthetic.problem_of(r).expression
        if key not in seen:
            seen.add(key)
            out.append(r)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class ScratchConfig:
    """A random from-scratch SLM (smoke runs only): `spec` holds `ScratchModel` fields."""

    enabled: bool = False
    spec: Mapping[str, object] = dataclasses.field(
        default_factory=lambda: dict(hidden_size=32, intermediate_size=64, num_layers=1,
                                     num_heads=2, num_kv_heads=1, vocab_size=512,
                                     split_digits=True, family="qwen2", seed=0)
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SLMConfig:
    """The SLM and how it samples.

    `path` is a HF model directory (Qwen2.5-7B-Instruct, or a trained run's DIR/export);
    `price_name` the price table entry it is charged at. `temperature` 0 is greedy [open];
    `top_k` 0 and `top_p` 1 are off; `max_new_tokens` 2048 is the paper's response length.

    `samples` = k answers per question (issue 16's matched decoding: GRPO calibrates the stated
    confidence to the accuracy of samples at the rollout temperature, so evaluating it on
    greedy answers measures another policy). With k > 1 (and a temperature > 0) pass@1 is the
    mean over the k samples (mean@k), ECE / AUROC / Brier use every sample, and the cascade
    defers sample by sample, so its pass@1 and cost are expectations over the SLM's sampling;
    the intervals resample questions with their k samples together. Default 1 [open]: the
    paper's single answer; the demo uses k = 4 at the rollout temperature, and reports greedy
    decoding beside it.
    """

    path: str = ""
    price_name: str = "Qwen/Qwen2.5-7B-Instruct"
    dtype: str = "bfloat16"
    max_new_tokens: int = 2048
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    batch_size: int = 16
    seed: int = 0
    samples: int = 1
    scratch: ScratchConfig = ScratchConfig()

    def __post_init__(self):
        if self.samples < 1:
            raise CoreaError(f"slm.samples={self.samples}: must be >= 1")
        if self.samples > 1 and self.temperature <= 0:
            raise CoreaError(
                f"slm.samples={self.samples} with slm.temperature={self.temperature}: greedy "
                "samples are identical; set a temperature > 0 (the rollout's, e.g. 1.0)"
            )


# What decides the SLM's answers besides the model and the prompt: the cache's run key.
_SAMPLING_FIELDS = ("max_new_tokens", "temperature", "top_k", "top_p", "batch_size", "seed",
                    "dtype")  # fmt: skip


def slm_model_dir(slm: SLMConfig, workdir: Path, questions: dict) -> Path:
    """The SLM's model directory: `slm.path`, or with `slm.scratch.enabled` a tiny random model
    built once in `workdir/scratch_model` (its tokenizer trained on the synthetic task and the
    questions to answer)."""
    if slm.scratch.enabled:
        from corea_jax.data import DEFAULT_SYSTEM, synthetic
        from corea_jax.models.scratch import ScratchModel, build_scratch_model

        model_dir = workdir / "scratch_model"
        if not (model_dir / "config.json").exists():
            records = synthetic.make_split(synthetic.SyntheticTask(), "train", 200)
            texts = [r.question for r in records] + [
                synthetic.reference_completion(r, 0.9) for r in records
            ]
            texts += [DEFAULT_SYSTEM] + [r.question for rs, _ in questions.values() for r in rs]
            build_scratch_model(model_dir, texts, ScratchModel(**slm.scratch.spec))
        return model_dir
    if not slm.path:
        raise CoreaError("slm.path: set the SLM's HF model directory (or slm.scratch.enabled)")
    if not Path(slm.path).is_dir():
        raise CoreaError(f"slm.path: {slm.path}: model directory not found")
    return Path(slm.path)


def _model_fingerprint(model_dir: Path) -> str:
    parts = [str(model_dir.resolve())]
    for path in sorted(model_dir.glob("*.safetensors")) + [model_dir / "config.json"]:
        if path.exists():
            stat = path.stat()
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def _read_cache(path: Path) -> dict[str, dict]:
    rows = {}
    if not path.exists():
        return rows
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows[row["key"]] = row
            except (json.JSONDecodeError, KeyError, TypeError):
                raise CoreaError(
                    f"{path}, line {lineno}: unreadable SLM cache row; delete the file to resample"
                ) from None
    return rows


class SLMAnswerer:
    """Loads the SLM once and answers datasets through the per-dataset cache in `cache_dir`."""

    def __init__(self, model_dir: str | Path, settings: SLMConfig, cache_dir: Path):
        self.model_dir, self.settings, self.cache_dir = Path(model_dir), settings, cache_dir
        self._model = self._sampler_obj = None
        from corea_jax.models import load_tokenizer

        self.tokenizer = load_tokenizer(self.model_dir)
        self.samples_drawn = 0
        run = {f: getattr(settings, f) for f in _SAMPLING_FIELDS}
        if settings.samples > 1:  # absent for one sample: earlier caches stay valid
            run["samples"] = settings.samples
        run["model"] = _model_fingerprint(self.model_dir)
        self._run_key = json.dumps(run, sort_keys=True)

    def model(self):
        """The SLM (`CausalLM`), loaded once: the sampler and the probe features share it."""
        if self._model is None:
            import jax.numpy as jnp

            from corea_jax.models import load_model

            self._model = load_model(self.model_dir, dtype=jnp.dtype(self.settings.dtype))
        return self._model

    def _sampler(self):
        if self._sampler_obj is None:
            from corea_jax.sampling import Sampler

            self._sampler_obj = Sampler.for_tokenizer(self.model(), self.tokenizer)
        return self._sampler_obj

    def prompt_ids(self, records, templates) -> list[list[int]]:
        """Each record's prompt as token ids (the chat template applied), as sampled."""
        from corea_jax.data import encode_prompt

        return [encode_prompt(r, self.tokenizer, templates) for r in records]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_chat(self, messages) -> int:
        """Tokens of `messages` as the SLM is fed them: its chat template, the generation prompt
        opened, encoded as `encode_prompt` does (so the SLM's own messages count its
        `prompt_tokens`)."""
        from corea_jax.models import render_chat

        return self.count_tokens(render_chat(self.tokenizer, list(messages)))

    def token_counter(self):
        """A `TokenCounter` counting another model's prompt and reply as this SLM's rows are
        counted: `prompt_tokens` the chat-template-rendered prompt, `completion_tokens` the
        reply's tokens plus the one EOS / end-of-turn token the sampler counts when a reply
        ends by itself (finish reason "stop" from a chat endpoint, "eos" here). Chat-template
        tokens are thus counted on both sides (`LLMConfig.usage="slm"`)."""
        from corea_jax.cascade.client import TokenCounter

        return TokenCounter(self.count_tokens, "slm_tokenizer", self.count_chat, end_of_turn=1)

    def answer(self, name: str, records, templates) -> list[dict]:
        """`slm.samples` rows per record, question-major (record 0's samples, then record 1's,
        ...): id, sample, text, prompt/completion tokens, finish reason, avgprob (arithmetic)
        and avgprob_geometric. Cached in `cache_dir/NAME.jsonl`."""
        s = self.settings
        k = s.samples
        prompts = self.prompt_ids(records, templates)
        base = [
            hashlib.sha256(f"{self._run_key}|{r.id}|{p}".encode()).hexdigest()
            for r, p in zip(records, prompts, strict=True)
        ]
        # One sample: the key of the row as it always was, so existing caches stay valid.
        keys = base if k == 1 else [f"{b}-{j}" for b in base for j in range(k)]
        path = self.cache_dir / f"{name}.jsonl"
        cached = _read_cache(path)
        done = {key: cached[key] for key in keys if key in cached}
        b = s.batch_size
        starts = [
            i
            for i in range(0, len(records), b)
            if any(key not in done for key in keys[i * k : (i + b) * k])
        ]
        todo = sum(key not in done for key in keys)
        with progress(len(keys), f"SLM {name}", "answer", initial=len(keys) - todo) as bar:
            stated = []
            for start in starts:
                chunk = keys[start * k : (start + b) * k]
                new = sum(key not in done for key in chunk)
                rows = self._sample(
                    records[start : start + b], prompts[start : start + b], start // b
                )
                done.update(zip(chunk, rows, strict=True))
                ordered = [done[key] | {"key": key} for key in keys if key in done]
                write_atomic(
                    path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered)
                )
                stated += [c for r in rows if (c := _stated(r["text"])) is not None]
                bar.update(new, conf=float(np.mean(stated)) if stated else float("nan"))
        return [done[key] | {"key": key} for key in keys]

    def _sample(self, records, prompts, batch_index: int) -> list[dict]:
        from corea_jax.cascade.sweep import mean_token_probability
        from corea_jax.sampling import make_method

        s = self.settings
        method = make_method(s.temperature, s.top_k or None, s.top_p if s.top_p < 1 else None)
        out = self._sampler().generate(
            prompts,
            max_new_tokens=s.max_new_tokens,
            n=s.samples,
            method=method,
            seed=s.seed + batch_index,
        )  # rows R = B x k: row r is sample r % k of prompt r // k
        self.samples_drawn += len(prompts) * s.samples
        mask = np.arange(out.logprobs.shape[1])[None, :] < out.lengths[:, None]  # [R, T]
        arith = np.asarray(mean_token_probability(out.logprobs, mask, "arithmetic"))
        geo = np.asarray(mean_token_probability(out.logprobs, mask, "geometric"))
        rows = []
        for r in range(len(records) * s.samples):
            q = r // s.samples
            rows.append(
                {
                    "id": records[q].id,
                    "sample": r % s.samples,
                    "text": self.tokenizer.decode(out.row_tokens(r), skip_special_tokens=True),
                    "prompt_tokens": len(prompts[q]),
                    "completion_tokens": int(out.lengths[r]),
                    "finish_reason": out.finish_reasons[r],
                    "avgprob": _finite(arith[r]),
                    "avgprob_geometric": _finite(geo[r]),
                }
            )
        return rows


def _stated(text: str) -> float | None:
    """The confidence a completion states (None if none), for the progress line only."""
    from corea_jax.scoring.parsing import parse_completion

    return parse_completion(text).confidence


def _finite(x) -> float | None:
    x = float(x)
    return round(x, 6) if np.isfinite(x) else None

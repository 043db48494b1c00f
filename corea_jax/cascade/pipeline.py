"""The cascade and the standalone SLM evaluation, end to end: `run` and `evaluate`.

    corea-jax cascade  --config=configs/eval_ood_math.py --workdir=DIR
    corea-jax evaluate --config=configs/eval_ood_math.py --workdir=DIR

Both take a `CascadeConfig` (built from the ConfigDict once, at the entry point). `evaluate` is
step 1 alone; `run` is all of it, as compute then render:

1. The SLM answers every question of the configured datasets (`slm_answers`; cached in
   `DIR/slm/NAME.jsonl`, so a re-run samples nothing).
2. The LLM answers every question once (`llm_answers`; cached in `DIR/llm_cache.sqlite`). Both
   models' texts are scored by `corea_jax.scoring.score.score_texts` with the configured output
   format (a multiple-choice question reads a letter); the LLM's stated confidence is not used.
   A question the LLM failed within `llm.max_failed_questions` counts as wrong at zero LLM cost
   in this run's report.
3. `question_rows` (pure): costs, tokens x the price table (`CascadeConfig.price_table`), the
   SLM priced as `slm.price_name` on every question (both sides billed alike by default: the
   LLM sent the SLM's messages, a simulated one counted with the SLM's tokenizer,
   `LLMConfig`), and each question's split
   (`calibration_mask`: `tau.calibration_fraction` of the questions by a seeded hash of its
   problem text, so a problem asked twice is on one side only).
   Before step 2, `signals.fitted_scores` adds the probe's and the router's scores when
   `signals.use` names them (fitted on the calibration split, `cascade.signals`).
4. `summary.summarize` (pure): per group (each dataset, and "all" pooled when there are
   several), per confidence signal of `signals.use` ("verbalized", "avgprob": the SLM's mean
   token probability, "probe", "router"), tau chosen on the calibration split by each rule of
   `tau.rules` and reported on the test split with the sweep, the baselines and intervals. It
   returns a `CascadeResult`; `report.write_cascade` writes it.

With `tau.fixed` set, steps 2-4 are replaced by `cascade.fixed`: the LLM is asked only for the
questions whose confidence is below that tau, and the report says so.

Outputs in DIR (each written to a temporary file or folder and renamed into place, so a failure
leaves what was there intact): `questions.jsonl` (one row per question: SLM and LLM outputs,
grades, tokens, costs, confidences, split), `summary.json`, `summary.csv` (test-split operating
points), `report.md` and `report/GROUP/*.png`. `evaluate` writes `eval/metrics.json`,
`eval/metrics.csv`, `eval/NAME.jsonl` and `eval/reliability.png`.

With `llm.simulated=True` the LLM is simulated in-process (`corea_jax.testing.simulated_llm`);
every output says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from corea_jax.cascade import fixed, report, signals
from corea_jax.cascade.llm_answers import answer_with_llm
from corea_jax.cascade.settings import CascadeConfig
from corea_jax.cascade.slm_answers import SLMAnswerer, load_questions, slm_model_dir
from corea_jax.cascade.summary import (  # noqa: F401 - re-exported: step 4 lived here
    SIGNAL_KEYS,
    CascadeResult,
    GroupResult,
    SignalResult,
    confidences,
    evaluation_metrics,
    signal_metrics,
    summarize,
)
from corea_jax.cascade.sweep import calibration_mask
from corea_jax.data.splits import question_key
from corea_jax.errors import CoreaError
from corea_jax.scoring.score import ScoreItem, score_texts
from corea_jax.scoring.stats import Interval

_GRADE_KEYS = ("answer", "confidence", "format_ok", "format_reason", "correct", "grade_method")
_SLM_KEYS = ("answer", "correct", "format_ok", "prompt_tokens", "completion_tokens",
             "finish_reason", "text")  # fmt: skip
_LLM_KEYS = ("answer", "correct", "prompt_tokens", "completion_tokens", "usage_source", "error",
             "text")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Steps 1-2: the answers, scored


def score_answers(records, texts, fmt: str, grader) -> list[dict]:
    """One dict per record: answer, confidence (None when invalid), format_ok, format_reason,
    correct, grade_method; through the one scoring path, `score_texts`."""
    items = [ScoreItem.from_record(r) for r in records]
    return [{k: s[k] for k in _GRADE_KEYS} for s in score_texts(texts, items, grader, fmt).rows()]


def slm_pass(cfg: CascadeConfig, workdir: Path, questions, grader) -> tuple[dict, SLMAnswerer]:
    """`{name: [row]}`: SLM sample rows (cached; `slm.samples` per question, question-major)
    merged with their scores."""
    answerer = SLMAnswerer(slm_model_dir(cfg.slm, workdir, questions), cfg.slm, workdir / "slm")
    out = {}
    for name, (records, templates) in questions.items():
        rows = answerer.answer(name, records, templates)
        grades = score_answers(
            per_sample(records, cfg.slm.samples), [r["text"] for r in rows], cfg.output_format,
            grader,
        )  # fmt: skip
        out[name] = [row | g for row, g in zip(rows, grades, strict=True)]
    return out, answerer


def per_sample(items, k: int) -> tuple:
    """Each of `items` (one per question) k times, in the SLM rows' question-major order."""
    return tuple(item for item in items for _ in range(k))


def llm_pass(cfg: CascadeConfig, cache: Path, questions, grader, count_tokens):
    """`{name: [row]}` of LLM answers (text, tokens, usage source, error, scores), and the call
    counts; answers are cached in the SQLite file `cache`."""
    answers, stats = answer_with_llm(cfg.llm, questions, cache, count_tokens, cfg.seed)
    out = {
        name: scored_llm_rows(cfg, records, answers[name], grader)
        for name, (records, _) in questions.items()
    }
    return out, stats


def scored_llm_rows(cfg: CascadeConfig, records, answers, grader) -> list[dict]:
    """The LLM's `LLMResponse`s to `records` as rows: text, tokens, usage source, error, scores."""
    grades = score_answers(records, [a.text for a in answers], cfg.output_format, grader)
    fields = ("text", "prompt_tokens", "completion_tokens", "usage_source", "error")
    return [{f: getattr(a, f) for f in fields} | g for a, g in zip(answers, grades, strict=True)]


# ---------------------------------------------------------------------------------------------
# Steps 3-4: pure functions of the answers


def question_rows(cfg: CascadeConfig, questions, slm: dict, llm: dict) -> list[dict]:
    """One row per question (`questions.jsonl`): split, gold, confidences, both models' answers,
    grades, tokens and costs."""
    prices = cfg.price_table()
    masks = calibration_masks(cfg, questions)
    k = cfg.slm.samples
    rows = []
    for name, (records, _) in questions.items():
        # One row per SLM sample; the question's LLM answer (asked once) on each of its rows.
        mask, records = per_sample(masks[name], k), per_sample(records, k)
        s_rows, l_rows = slm[name], per_sample(llm[name], k)
        s_cost = prices.cost(
            cfg.slm.price_name,
            [r["prompt_tokens"] for r in s_rows],
            [r["completion_tokens"] for r in s_rows],
        )
        l_cost = prices.cost(
            cfg.llm.model,
            [r["prompt_tokens"] for r in l_rows],
            [r["completion_tokens"] for r in l_rows],
        )
        # A router decides after the SLM's prefill, before it generates (`signals.router_cost`).
        prefill = prices.cost(cfg.slm.price_name, [r["prompt_tokens"] for r in s_rows], 0)
        if cfg.signals.router_cost == "none":
            prefill = np.zeros_like(prefill)
        for i, rec in enumerate(records):
            s, m = s_rows[i], l_rows[i]
            rows.append(
                {
                    "dataset": name,
                    "id": rec.id,
                    "sample": s.get("sample", 0),
                    "split": "calibration" if mask[i] else "test",
                    "gold": rec.answer,
                    "kind": rec.kind,
                    "level": _level(rec),
                    "confidence": s["confidence"],
                    "avgprob": s["avgprob"],
                    **{key: s.get(key) for key in cfg.signals.fitted},
                    **{f"slm_{key}": s[key] for key in _SLM_KEYS},
                    "slm_cost": float(s_cost[i]),
                    "slm_prefill_cost": float(prefill[i]),
                    **{f"llm_{key}": m[key] for key in _LLM_KEYS},
                    "llm_cost": float(l_cost[i]),
                    # The simulated LLM's known chance of being right: expected accuracies.
                    **(
                        {"llm_p_correct": cfg.llm.simulated_accuracy_of(rec)}
                        if cfg.llm.simulated
                        else {}
                    ),  # fmt: skip
                }
            )
    return rows


def _level(record):
    """The question's difficulty level where its source has one (MATH's "Level 5", the
    synthetic task's steps and digits), for per-level calibration; None otherwise."""
    meta = record.metadata
    if "steps" in meta and "digits" in meta:
        return f"{meta['steps']},{meta['digits']}"
    level = meta.get("level")
    return None if level is None else str(level)


def calibration_masks(cfg: CascadeConfig, questions) -> dict[str, np.ndarray]:
    """`{name: bool [Q]}`: True for the dataset's calibration split (`calibration_mask`:
    `tau.calibration_fraction` of its questions by a seeded hash of the problem text)."""
    tau, masks = cfg.tau, {}
    for name, (records, _) in questions.items():
        mask = calibration_mask(
            [r.id for r in records],
            tau.calibration_fraction,
            tau.seed,
            problems=[question_key(r.question) for r in records],
        )
        if mask.all() or not mask.any():
            raise CoreaError(
                f"datasets.{name}: {len(records)} questions cannot be split into calibration "
                f"and test at tau.calibration_fraction={tau.calibration_fraction}"
            )
        masks[name] = mask
    return masks


# ---------------------------------------------------------------------------------------------
# The two commands


def run(cfg: CascadeConfig, workdir, llm_cache: Path | None = None, *, with_rows: bool = False):
    """The cascade: SLM pass, LLM pass, costs, sweeps, tau rules, report. Returns the summary,
    or `(rows, summary)` with `with_rows` (the rows of `questions.jsonl`, in memory, for a
    caller that goes on computing from them). `llm_cache`: the LLM answer cache (default
    `workdir/llm_cache.sqlite`; `corea-jax compare` shares one between its SLMs)."""
    workdir = Path(workdir)
    llm_cache = workdir / "llm_cache.sqlite" if llm_cache is None else Path(llm_cache)
    questions = load_questions(cfg.datasets)
    workdir.mkdir(parents=True, exist_ok=True)
    prices = cfg.price_table()
    prices.price(cfg.slm.price_name), prices.price(cfg.llm.model)  # fail before any work
    with cfg.grading.grader() as grader:
        slm, answerer = slm_pass(cfg, workdir, questions, grader)
        if cfg.tau.fixed is not None:
            rows, summary = _run_fixed(cfg, workdir, questions, slm, answerer, grader)
            return (rows, summary) if with_rows else summary
        k = cfg.slm.samples
        fits = signals.fitted_scores(
            cfg, workdir, answerer,
            {name: (per_sample(recs, k), t) for name, (recs, t) in questions.items()}, slm,
            {name: np.repeat(m, k) for name, m in calibration_masks(cfg, questions).items()},
        )  # fmt: skip
        llm, llm_stats = llm_pass(cfg, llm_cache, questions, grader, answerer.token_counter())
    header = {
        "model_dir": str(answerer.model_dir),
        "llm_calls": llm_stats,
        "slm_samples_drawn": answerer.samples_drawn,
        "fitted_signals": {name: f.as_dict() for name, f in fits.items()},
    }
    result = summarize(cfg, question_rows(cfg, questions, slm, llm), header)
    report.write_cascade(workdir, result)
    print(
        f"{len(result.rows)} questions; LLM calls this run: {llm_stats['calls']} "
        f"(cache hits {llm_stats['cache_hits']}); SLM samples drawn: {answerer.samples_drawn}"
    )
    print(f"wrote {workdir / 'report.md'}, summary.json, summary.csv, questions.jsonl")
    return (result.rows, result.summary) if with_rows else result.summary


def _run_fixed(cfg: CascadeConfig, workdir: Path, questions, slm, answerer, grader):
    """`tau.fixed` set: the LLM answers only the deferred questions (see `cascade.fixed`)."""
    defer = fixed.deferred(cfg, slm)
    subset, answers, stats = fixed.ask_deferred(
        cfg, workdir, questions, defer, answerer.token_counter()
    )
    llm = {
        name: scored_llm_rows(cfg, records, answers[name], grader)
        for name, (records, _) in subset.items()
    }
    rows = fixed.fixed_rows(cfg, questions, slm, defer, llm)
    header = {
        "model_dir": str(answerer.model_dir),
        "llm_calls": stats,
        "slm_samples_drawn": answerer.samples_drawn,
    }
    summary = fixed.fixed_summary(cfg, rows, header)
    fixed.write_fixed(workdir, rows, summary)
    n_deferred = sum(r["deferred"] for r in rows)
    print(
        f"{len(rows)} questions at tau = {cfg.tau.fixed:g}: {n_deferred} deferred and sent to "
        f"the LLM (calls this run: {stats['calls']}, cache hits {stats['cache_hits']}); SLM "
        f"samples drawn: {answerer.samples_drawn}"
    )
    print(f"wrote {workdir / 'report.md'}, summary.json, summary.csv, questions.jsonl")
    return rows, summary


def evaluate(cfg: CascadeConfig, workdir) -> dict:
    """Step 1 alone: per-dataset pass@1, ECE, AUROC, reliability diagram. Returns the metrics."""
    workdir = Path(workdir)
    questions = load_questions(cfg.datasets)
    workdir.mkdir(parents=True, exist_ok=True)
    with cfg.grading.grader() as grader:
        slm, answerer = slm_pass(cfg, workdir, questions, grader)
    bins, invalid = cfg.report.bins, cfg.tau.invalid_confidence
    metrics = evaluation_metrics(slm, bins, invalid, answerer.samples_drawn, cfg.slm.samples)
    series = {
        name: (confidences(rows), np.array([r["correct"] for r in rows], bool))
        for name, rows in slm.items()
    }
    out_dir = workdir / "eval"
    report.write_evaluation(out_dir, slm, metrics, series, bins, invalid)
    for name, m in metrics["datasets"].items():
        iv = {k: Interval(**v).format(digits=3) for k, v in m["intervals"].items()}
        k = cfg.slm.samples
        count = f"{m['n'] // k} questions" + (f" x {k} samples" if k > 1 else "")
        print(f"{name}: {count}, pass@1 {iv['pass@1']}, ECE {iv['ece']}, AUROC {iv['auroc']} "
              "(95% intervals over questions)")  # fmt: skip
    print(f"wrote {out_dir / 'metrics.json'}, metrics.csv and reliability.png")
    return metrics

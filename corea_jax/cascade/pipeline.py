"""The cascade and the standalone SLM evaluation, end to end: `run` and `evaluate`.

    corea-jax cascade  --config=configs/eval_ood_math.py --workdir=DIR
    corea-jax evaluate --config=configs/eval_ood_math.py --workdir=DIR

`evaluate` is step 1 alone; `run` is all of it:

1. The SLM answers every question of the configured datasets (`slm_answers`; cached in
   `DIR/slm/NAME.jsonl`, so a re-run samples nothing). Answers are parsed and graded.
2. The LLM answers every question once (deferred or not: that makes every tau, baseline and
   rule a pure function of the answers) through `LLMClient`, cached in `DIR/llm_cache.sqlite`.
   Its prompt [open]: the system text `llm.system` (default: the SLM's default instructions,
   `corea_jax.data.DEFAULT_SYSTEM`, which ask for the same <think>/<answer>/<confidence>
   layout) and the same user text as the SLM's (question, and options for multiple choice). It
   is parsed with the same output format; its stated confidence is not used. A question the
   LLM failed within `llm.max_failed_questions` counts as wrong at zero LLM cost in this run's
   report (it is not cached, so the next run asks again).
3. Costs: tokens x the price table (`PriceTable`; `DEFAULT_PRICES` plus the config's `prices`
   entries), the SLM priced as `slm.price_name` (it is charged on every question).
4. Per group (each dataset, and "all" pooled when there are several), per confidence signal
   ("verbalized", and "avgprob": the SLM's mean token probability): tau is chosen on a
   calibration split (`calibration_mask`, `tau.calibration_fraction` of the questions by a
   seeded hash of "dataset/id") by each rule of `tau.rules`, and reported on the other (test)
   questions with the sweep and the baselines.

Outputs in DIR (each written to a temporary file or folder and renamed into place, so a failure
leaves what was there intact): `questions.jsonl` (one row per question: SLM and LLM outputs,
grades, tokens, costs, confidences, split), `summary.json`, `summary.csv` (test-split operating
points), `report.md` and `report/GROUP/*.png`. `evaluate` writes `eval/metrics.json`,
`eval/metrics.csv`, `eval/NAME.jsonl` and `eval/reliability.png`.

With `llm.simulated=True` the LLM is `SimulatedLLMServer` on loopback, answering with the gold
answer at `llm.simulated_accuracy` (`corea_jax.testing.simulated_llm`); every output says so.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from corea_jax.atomic_files import atomic_path, replace_dir
from corea_jax.cascade.slm_answers import (
    QuestionSource,
    SLMAnswerer,
    SLMSettings,
    grade_texts,
    load_questions,
    write_atomic,
)
from corea_jax.errors import CoreaError

SIGNALS = ("verbalized", "avgprob")


# ---------------------------------------------------------------------------------------------
# The ConfigDict stops here: typed settings out of it.


def _sources(config) -> list[QuestionSource]:
    sources = []
    for name, d in config.datasets.items():
        unknown = set(d.keys()) - {"reader", "path", "split", "limit"}
        if unknown:
            raise CoreaError(f"datasets.{name}: unknown keys {sorted(unknown)}")
        sources.append(
            QuestionSource(
                name,
                d.get("reader", name),
                str(d.get("path", "")),
                d.get("split", "test"),
                int(d.get("limit", 0)),
            )
        )
    if not sources:
        raise CoreaError("datasets: empty; name at least one dataset")
    return sources


def _slm_settings(config) -> SLMSettings:
    s = config.slm
    return SLMSettings(
        max_new_tokens=s.max_new_tokens,
        temperature=s.temperature,
        top_k=s.top_k,
        top_p=s.top_p,
        batch_size=s.batch_size,
        seed=s.seed,
        dtype=s.dtype,
    )


def _model_dir(config, workdir: Path, questions) -> Path:
    s = config.slm
    if s.scratch.enabled:
        from corea_jax.data import DEFAULT_SYSTEM, synthetic
        from corea_jax.models.scratch import ScratchModel, build_scratch_model

        model_dir = workdir / "scratch_model"
        if not (model_dir / "config.json").exists():
            records = synthetic.make_split(synthetic.SyntheticTask(), "train", 200)
            texts = [r.question for r in records] + [
                synthetic.reference_completion(r, 0.9) for r in records
            ]
            texts += [DEFAULT_SYSTEM] + [r.question for rs, _ in questions.values() for r in rs]
            build_scratch_model(model_dir, texts, ScratchModel(**s.scratch.spec.to_dict()))
        return model_dir
    if not s.path:
        raise CoreaError("slm.path: set the SLM's HF model directory (or slm.scratch.enabled)")
    if not Path(s.path).is_dir():
        raise CoreaError(f"slm.path: {s.path}: model directory not found")
    return Path(s.path)


def _grader(config):
    from corea_jax.scoring.grading import GradingConfig
    from corea_jax.scoring.grading_workers import Grader

    return Grader(
        workers=config.grading.workers,
        options=GradingConfig(time_limit_s=config.grading.time_limit_s),
    )


# ---------------------------------------------------------------------------------------------
# Step 1: the SLM


def slm_pass(config, workdir: Path, questions, grader) -> tuple[dict, SLMAnswerer]:
    """`{name: [row]}`: SLM sample rows (cached) merged with their parse and grade."""
    answerer = SLMAnswerer(
        _model_dir(config, workdir, questions), _slm_settings(config), workdir / "slm"
    )
    out = {}
    for name, (records, templates) in questions.items():
        rows = answerer.answer(name, records, templates)
        grades = grade_texts(records, [r["text"] for r in rows], config.output_format, grader)
        out[name] = [row | g for row, g in zip(rows, grades, strict=True)]
    return out, answerer


def _calibration(rows, n_bins: int, invalid: float) -> dict:
    from corea_jax.scoring.metrics import calibration_summary

    return calibration_summary(
        np.array([r["correct"] for r in rows], bool),
        np.array([r["confidence"] or 0.0 for r in rows], np.float32),
        np.array([r["confidence"] is not None for r in rows], bool),
        np.array([r["format_ok"] for r in rows], bool),
        n_bins=n_bins,
        invalid_confidence=invalid,
    )


def evaluate(config, workdir) -> dict:
    """Step 1 alone: per-dataset pass@1, ECE, AUROC, reliability diagram. Returns the metrics."""
    from corea_jax.cascade.report import plot_reliability

    workdir = Path(workdir)
    questions = load_questions(_sources(config))
    workdir.mkdir(parents=True, exist_ok=True)
    with _grader(config) as grader:
        slm, answerer = slm_pass(config, workdir, questions, grader)
    invalid = config.tau.invalid_confidence
    out_dir = workdir / "eval"
    metrics = {"slm_samples_drawn": answerer.samples_drawn, "datasets": {}}
    csv_rows = []
    for name, rows in slm.items():
        m = _calibration(rows, config.report.bins, invalid)
        m["avgprob_auroc"] = _avgprob_auroc(rows)
        metrics["datasets"][name] = m
        csv_rows.append(
            {k: m[k] for k in ("n", "pass@1", "format_rate", "ece", "brier", "auroc")}
            | {"dataset": name}
        )
        write_atomic(
            out_dir / f"{name}.jsonl",
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
        )
    series = {
        name: (_confidences(rows), np.array([r["correct"] for r in rows], bool))
        for name, rows in slm.items()
    }
    with atomic_path(out_dir / "reliability.png") as tmp:
        plot_reliability(series, tmp, n_bins=config.report.bins, invalid_confidence=invalid)
    write_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_atomic(out_dir / "metrics.csv", _csv(csv_rows, ["dataset", "n", "pass@1", "format_rate",
                                                            "ece", "brier", "auroc"]))  # fmt: skip
    for name, m in metrics["datasets"].items():
        print(f"{name}: {m['n']} questions, pass@1 {_f(m['pass@1'])}, ECE {_f(m['ece'])}, "
              f"AUROC {_f(m['auroc'])}")  # fmt: skip
    print(f"wrote {out_dir / 'metrics.json'}, metrics.csv and reliability.png")
    return metrics


def _avgprob_auroc(rows):
    from corea_jax.scoring.metrics import auroc

    p = np.array([np.nan if r["avgprob"] is None else r["avgprob"] for r in rows])
    c = np.array([r["correct"] for r in rows], bool)
    if c.all() or not c.any():
        return None
    return round(float(auroc(np.nan_to_num(p), c)), 6)


def _confidences(rows, key: str = "confidence") -> np.ndarray:
    return np.array([np.nan if r[key] is None else r[key] for r in rows], np.float64)


# ---------------------------------------------------------------------------------------------
# Step 2: the LLM


def _llm_messages(config, record, templates) -> tuple[dict, ...]:
    from corea_jax.data import DEFAULT_SYSTEM

    system = config.llm.system or DEFAULT_SYSTEM
    return (
        {"role": "system", "content": system},
        {"role": "user", "content": templates.user_text(record)},
    )


@contextlib.contextmanager
def _llm_endpoint(config, questions):
    """The endpoint to call: the configured one, or a simulated server started here."""
    from corea_jax.cascade import LLMEndpoint

    llm = config.llm
    if not llm.simulated:
        yield LLMEndpoint(llm.base_url, llm.model, llm.api_key_env or None), None
        return
    from corea_jax.testing.llm_server import SimulatedLLMServer
    from corea_jax.testing.simulated_llm import gold_answer_policy

    by_level = dict(llm.get("simulated_accuracy_by_level", None) or {})

    def accuracy(record) -> tuple:
        level = f"{record.metadata.get('steps')},{record.metadata.get('digits')}"
        return (by_level[level],) if level in by_level else ()

    answers = {
        templates.user_text(r): (r.answer, r.kind, len(r.choices), *accuracy(r))
        for records, templates in questions.values()
        for r in records
    }
    policy = gold_answer_policy(answers, llm.simulated_accuracy, llm.simulated_seed)
    with SimulatedLLMServer(policy, model=llm.model) as server:
        print(
            f"corea-jax: SIMULATED LLM on {server.base_url} (model name {llm.model!r}, "
            f"accuracy {'by difficulty level' if by_level else llm.simulated_accuracy}); "
            "no real model is measured",
            file=sys.stderr,
        )
        # The simulated server's port changes per run; the cache key uses a fixed URL (naming
        # the policy's accuracy and seed) so the cache still answers a re-run.
        levels = hashlib.sha256(json.dumps(by_level, sort_keys=True).encode()).hexdigest()[:8]
        fixed = (
            f"http://simulated-llm.invalid/acc{llm.simulated_accuracy:g}-levels{levels}"
            f"-seed{llm.simulated_seed}/v1"
        )
        yield LLMEndpoint(fixed, llm.model, None), server


def llm_pass(config, workdir: Path, questions, grader, count_tokens) -> tuple[dict, dict]:
    """`{name: [row]}` of LLM answers (text, tokens, usage source, error, parse, grade), and the
    client's and server's call counts."""
    from corea_jax.cascade import (
        ClientOptions,
        LLMClient,
        LLMRequest,
        ResponseCache,
        RetryPolicy,
        SamplingParams,
    )
    from corea_jax.cascade.backend import OpenAIChatBackend

    llm = config.llm
    params = SamplingParams(temperature=llm.temperature, max_tokens=llm.max_tokens)
    options = ClientOptions(
        concurrency=llm.concurrency,
        timeout_s=llm.timeout_s,
        retry=RetryPolicy(max_attempts=llm.max_attempts),
        max_failed_questions=llm.max_failed_questions,
    )
    requests = {
        name: [LLMRequest(f"{name}/{r.id}", _llm_messages(config, r, templates)) for r in records]
        for name, (records, templates) in questions.items()
    }
    flat = [q for qs in requests.values() for q in qs]
    cache = ResponseCache(workdir / "llm_cache.sqlite")
    with _llm_endpoint(config, questions) as (endpoint, server):
        backend = None
        if server is not None:
            backend = OpenAIChatBackend(
                server.base_url, endpoint.model, "EMPTY", options.timeout_s,
                options.connect_timeout_s,
            )  # fmt: skip
        client = LLMClient(
            endpoint,
            params=params,
            options=options,
            cache=cache,
            count_tokens=count_tokens,
            backend=backend,
            seed=config.seed,
        )
        try:
            answers = client.complete(flat)
        finally:
            client.close()
            cache.close()
        server_requests = server.stats.total_requests if server is not None else None
    stats = {
        "calls": client.stats.calls,
        "cache_hits": client.stats.cache_hits,
        "failed_questions": client.stats.failed_questions,
        "server_requests": server_requests,
    }
    out, i = {}, 0
    for name, (records, _) in questions.items():
        chunk = answers[i : i + len(records)]
        i += len(records)
        grades = grade_texts(records, [a.text for a in chunk], config.output_format, grader)
        out[name] = [
            {
                "text": a.text,
                "prompt_tokens": a.prompt_tokens,
                "completion_tokens": a.completion_tokens,
                "usage_source": a.usage_source,
                "error": a.error,
            }
            | g
            for a, g in zip(chunk, grades, strict=True)
        ]
    return out, stats


# ---------------------------------------------------------------------------------------------
# Steps 3-4: costs, splits, sweeps, tau rules, reports


def _price_table(config):
    from corea_jax.cascade import DEFAULT_PRICES, PriceTable

    extra = {str(e[0]): (e[1], e[2]) for e in config.prices}
    return PriceTable({**DEFAULT_PRICES, **PriceTable.from_dict(extra, source="prices").prices})


def _choices(config, data, mask, invalid: float):
    from corea_jax.cascade import report_on_test, select_tau

    t = config.tau
    grid = np.round(np.arange(0.0, 1.0 + 1e-9, t.grid_step), 10)
    options = {
        "llm_pass": {},
        "within_llm": {"max_drop_points": t.max_drop_points},
        "budget": {"budget": t.budget, "relative": t.budget_relative},
    }
    cal, test = data.subset(mask), data.subset(~mask)
    out = []
    for rule in t.rules:
        if rule not in options:
            raise CoreaError(f"tau.rules: unknown rule {rule!r}; choose from {sorted(options)}")
        choice = select_tau(rule, cal, grid=grid, invalid_confidence=invalid, **options[rule])
        out.append(report_on_test(choice, test, invalid))
    return out, test, grid


def _point(p) -> dict:
    return {
        "tau": None if math.isnan(p.tau) else p.tau,
        "pass_at_1": p.pass_at_1,
        "avg_cost": p.avg_cost,
        "llm_fraction": p.llm_fraction,
    }


def run(config, workdir) -> dict:
    """The cascade: SLM pass, LLM pass, costs, sweeps, tau rules, report. Returns the summary."""
    from corea_jax.cascade import CascadeData, calibration_mask, redact_url, sweep_thresholds
    from corea_jax.cascade.report import summary_table, write_report

    workdir = Path(workdir)
    questions = load_questions(_sources(config))
    workdir.mkdir(parents=True, exist_ok=True)
    invalid = config.tau.invalid_confidence
    prices = _price_table(config)
    slm_price_name, llm_model = config.slm.price_name, config.llm.model
    prices.price(slm_price_name), prices.price(llm_model)  # fail before any work
    with _grader(config) as grader:
        slm, answerer = slm_pass(config, workdir, questions, grader)
        llm, llm_stats = llm_pass(config, workdir, questions, grader, answerer.count_tokens)

    rows = []
    for name, (records, _) in questions.items():
        mask = calibration_mask(
            [r.id for r in records], config.tau.calibration_fraction, config.tau.seed
        )
        if mask.all() or not mask.any():
            raise CoreaError(
                f"datasets.{name}: {len(records)} questions cannot be split into calibration "
                f"and test at tau.calibration_fraction={config.tau.calibration_fraction}"
            )
        s_cost = prices.cost(
            slm_price_name,
            [r["prompt_tokens"] for r in slm[name]],
            [r["completion_tokens"] for r in slm[name]],
        )
        l_cost = prices.cost(
            llm_model,
            [r["prompt_tokens"] for r in llm[name]],
            [r["completion_tokens"] for r in llm[name]],
        )
        for k, rec in enumerate(records):
            s, m = slm[name][k], llm[name][k]
            rows.append(
                {
                    "dataset": name,
                    "id": rec.id,
                    "split": "calibration" if mask[k] else "test",
                    "gold": rec.answer,
                    "kind": rec.kind,
                    "confidence": s["confidence"],
                    "avgprob": s["avgprob"],
                    **{f"slm_{key}": s[key] for key in _SLM_KEYS},
                    "slm_cost": float(s_cost[k]),
                    **{f"llm_{key}": m[key] for key in _LLM_KEYS},
                    "llm_cost": float(l_cost[k]),
                }
            )

    groups = {name: [r for r in rows if r["dataset"] == name] for name in questions}
    if len(groups) > 1:
        groups["all"] = rows
    simulated = bool(config.llm.simulated)
    title_llm = f"SIMULATED LLM ({llm_model})" if simulated else llm_model
    summary = {
        "simulated_llm": simulated,
        "slm": {"model_dir": str(answerer.model_dir), "price_name": slm_price_name},
        "llm": {
            "model": llm_model,
            "base_url": "simulated (loopback)" if simulated else redact_url(config.llm.base_url),
        },
        "llm_calls": llm_stats,
        "slm_samples_drawn": answerer.samples_drawn,
        "groups": {},
    }
    csv_rows = []
    md = [
        f"# COREA cascade: SLM {slm_price_name} -> {title_llm}",
        "",
        *(
            [
                "**The LLM is SIMULATED** (answers the gold answer at a set rate): no real large "
                "model is measured here.",
                "",
            ]
            if simulated
            else []
        ),  # fmt: skip
        f"{len(rows)} questions; tau picked on the calibration split, reported on the test "
        f"split. Prices (USD per 1M input / output tokens): SLM {_price(prices, slm_price_name)}, "
        f"LLM {_price(prices, llm_model)}.",
        "",
    ]
    report_tmp = Path(tempfile.mkdtemp(dir=workdir, prefix=".report."))
    try:
        for group, grows in groups.items():
            mask = np.array([r["split"] == "calibration" for r in grows])
            correct = np.array([r["slm_correct"] for r in grows], bool)
            entry = {"n": len(grows), "n_calibration": int(mask.sum()), "signals": {}}
            entry["slm_metrics"] = _calibration(
                [{"correct": r["slm_correct"], "confidence": r["confidence"],
                  "format_ok": r["slm_format_ok"]} for r in grows],
                config.report.bins, invalid,
            )  # fmt: skip
            entry["slm_metrics"].pop("reliability")
            reliability = {}
            for signal in SIGNALS:
                key = "confidence" if signal == "verbalized" else "avgprob"
                conf = _confidences(grows, key)
                reliability[f"SLM {signal}"] = (conf[~mask], correct[~mask])
                data = CascadeData(
                    conf,
                    correct,
                    np.array([r["llm_correct"] for r in grows], bool),
                    np.array([r["slm_cost"] for r in grows]),
                    np.array([r["llm_cost"] for r in grows]),
                )
                choices, test, grid = _choices(config, data, mask, invalid)
                sweep = sweep_thresholds(test, grid=grid, invalid_confidence=invalid)
                entry["signals"][signal] = {
                    "test_baselines": {
                        "slm_only": _point(sweep.slm_only),
                        "llm_only": _point(sweep.llm_only),
                        "oracle": _point(sweep.oracle),
                    },
                    "choices": [
                        {
                            "rule": c.rule,
                            "tau": c.tau,
                            "feasible": c.feasible,
                            "note": c.note,
                            "calibration": _point(c.calibration),
                            "test": _point(c.test),
                        }
                        for c in choices
                    ],  # fmt: skip
                }
                llm_cost = sweep.llm_only.avg_cost
                for system, point, rule in [
                    ("slm_only", sweep.slm_only, ""),
                    ("llm_only", sweep.llm_only, ""),
                    ("oracle", sweep.oracle, ""),
                ] + [("cascade", c.test, c.rule) for c in choices]:
                    csv_rows.append(
                        {"group": group, "signal": signal, "system": system, "rule": rule}
                        | _point(point)
                        | {"cost_vs_llm": point.avg_cost / llm_cost - 1 if llm_cost else None}
                    )
                md.append(summary_table(sweep, choices, f"{group}: {signal} confidence"))
                if signal == "verbalized":
                    write_report(
                        report_tmp / group, test, choices, title=f"{group} ({title_llm})",
                        reliability=None, sweep=sweep, invalid_confidence=invalid,
                    )  # fmt: skip
            from corea_jax.cascade.report import plot_reliability

            plot_reliability(
                reliability, report_tmp / group / "reliability.png", config.report.bins, invalid
            )
            md += [
                f"![{group}: pass@1, cost, LLM% vs tau](report/{group}/pass_cost_llm_vs_tau.png) "
                f"![{group}: pass@1 vs cost](report/{group}/pass_vs_cost.png) "
                f"![{group}: reliability](report/{group}/reliability.png)",
                "",
            ]
            summary["groups"][group] = entry
        replace_dir(report_tmp, workdir / "report")
    finally:
        shutil.rmtree(report_tmp, ignore_errors=True)

    write_atomic(
        workdir / "questions.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    )
    write_atomic(workdir / "summary.json", json.dumps(summary, indent=2) + "\n")
    fields = ["group", "signal", "system", "rule", "tau", "pass_at_1", "avg_cost", "cost_vs_llm",
              "llm_fraction"]  # fmt: skip
    write_atomic(workdir / "summary.csv", _csv(csv_rows, fields))
    write_atomic(workdir / "report.md", "\n".join(md) + "\n")
    print(
        f"{len(rows)} questions; LLM calls this run: {llm_stats['calls']} "
        f"(cache hits {llm_stats['cache_hits']}); SLM samples drawn: {answerer.samples_drawn}"
    )
    print(f"wrote {workdir / 'report.md'}, summary.json, summary.csv, questions.jsonl")
    return summary


_SLM_KEYS = ("answer", "correct", "format_ok", "prompt_tokens", "completion_tokens",
             "finish_reason", "text")  # fmt: skip
_LLM_KEYS = ("answer", "correct", "prompt_tokens", "completion_tokens", "usage_source", "error",
             "text")  # fmt: skip


def _csv(rows, fields) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _price(prices, model: str) -> str:
    p = prices.price(model)
    return f"{p.input_per_mtok:g} / {p.output_per_mtok:g}"


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"

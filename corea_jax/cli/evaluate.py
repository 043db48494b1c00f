"""Score completions produced anywhere (vLLM, an API, `corea-jax generate`).

  corea-jax evaluate --completions FILE.jsonl [--output DIR] [--format tags|boxed|choice]

Each line of FILE is a JSON object with `id`, `gold` (the reference answer, a string or a
number), `completion` (the model's full output) and optionally `kind` (auto, math, numeric,
choice, yesno; default auto: read off the gold) and `choices` (a list of option texts, a list of
{label, text} objects, or a {label: text} object). Several rows may share an `id` (samples of
one question). Rows are scored by `corea_jax.scoring.score.score_texts`, as in training and the
cascade: a choice question (kind "choice", or with choices) reads its answer as a letter.

Writes DIR/scored.jsonl, one row per input line: id, correct, answer, confidence,
confidence_valid, format_ok, format_reason, grade_method, grade_reason; and DIR/metrics.json:
pass@1 (and pass@k when every id has the same number of samples), format rate, ECE (equal width
and equal mass), Brier, AUROC (or why it is undefined), reliability bins, a confidence
histogram, and `intervals`: 95% bootstrap intervals over questions for pass@1, ECE, Brier and
AUROC (`corea_jax.scoring.stats`; the samples of one id are resampled together). An invalid
confidence counts as --invalid-confidence (default 0, i.e. defer). DIR defaults to FILE without
`.jsonl` plus `.eval`. A bad input row stops the run with an error that names its line.

  corea-jax evaluate --config=configs/FILE.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]

With --config the SLM of the config (`slm.path`) answers every question of its datasets (the
cascade's step 1, cached in DIR/slm/ and shared with `corea-jax cascade` on the same DIR) and
DIR/eval/ gets metrics.json and metrics.csv (pass@1, format rate, ECE, Brier, AUROC per dataset),
NAME.jsonl (the graded answers) and reliability.png (one diagram per dataset).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from corea_jax.atomic_files import write_atomic
from corea_jax.errors import CoreaError
from corea_jax.scoring import grading, metrics, parsing, stats
from corea_jax.scoring.grading import GradingConfig
from corea_jax.scoring.grading_workers import Grader
from corea_jax.scoring.score import ScoreItem, score_texts

TAKES_CONFIG = True


def add_arguments(parser) -> None:
    parser.add_argument("--completions", type=Path, metavar="FILE.jsonl", help="rows to score")
    parser.add_argument("--output", type=Path, metavar="DIR", help="default: FILE.eval/")
    parser.add_argument("--workdir", type=Path, help="run directory (with --config)")
    parser.add_argument(
        "--format",
        default="tags",
        choices=sorted(parsing.FORMATS),
        help="completion layout (default: tags = <think>/<answer>/<confidence>)",
    )
    parser.add_argument(
        "--think-prefilled",
        action="store_true",
        help="the prompt ended with <think>, so completions start inside it",
    )
    parser.add_argument("--workers", type=int, default=None, help="grading processes (all CPUs)")
    parser.add_argument(
        "--time-limit", type=float, default=5.0, help="seconds per answer (default 5)"
    )
    parser.add_argument("--bins", type=int, default=10, help="ECE / reliability bins (10)")
    parser.add_argument(
        "--invalid-confidence",
        type=float,
        default=0.0,
        help="confidence assumed when it is missing or invalid (default 0: defer)",
    )


def read_rows(path: Path) -> list[dict]:
    """The rows of a completions file, checked; errors name the file and line."""
    if not path.is_file():
        raise CoreaError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                rows.append(_check_row(line, f"{path}, line {lineno}"))
    if not rows:
        raise CoreaError(f"{path}: no rows")
    return rows


def _check_row(line: str, where: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise CoreaError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(row, dict):
        raise CoreaError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for field in ("id", "gold", "completion"):
        if field not in row:
            raise CoreaError(f"{where}: missing field '{field}'")
    if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
        raise CoreaError(f"{where}: field 'id' must be a string or an integer")
    gold = row["gold"]
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = repr(gold)
    if not isinstance(gold, str) or not gold.strip():
        raise CoreaError(f"{where}: field 'gold' must be a non-empty string or a number")
    if not isinstance(row["completion"], str):
        raise CoreaError(f"{where}: field 'completion' must be a string")
    kind = row.get("kind", "auto")
    if kind not in grading.KINDS:
        raise CoreaError(f"{where}: field 'kind' is {kind!r}; expected one of {grading.KINDS}")
    try:
        choices = grading.normalize_choices(row.get("choices"))
        grading.check_task(gold, None, kind, choices)
    except CoreaError as e:
        raise CoreaError(f"{where}: {e}") from None
    return {
        "id": row["id"],
        "gold": gold,
        "completion": row["completion"],
        "kind": kind,
        "choices": choices,
    }


def score_rows(rows: list[dict], fmt: parsing.OutputFormat, grader: Grader) -> list[dict]:
    """Parse and grade every row through `score_texts` (a choice question reads a letter); one
    output row each, in order."""
    items = [ScoreItem(r["gold"], r["kind"], r["choices"]) for r in rows]
    scored = score_texts([r["completion"] for r in rows], items, grader, fmt).rows()
    keys = ("correct", "answer", "confidence", "confidence_valid", "format_ok", "format_reason",
            "grade_method", "grade_reason")  # fmt: skip
    return [{"id": r["id"]} | {k: s[k] for k in keys} for r, s in zip(rows, scored, strict=True)]


def summarize(scored: list[dict], n_bins: int, invalid_confidence: float) -> dict:
    """metrics.json: `metrics.calibration_summary` plus pass@k and grading counts."""
    correct = np.array([s["correct"] for s in scored], bool)
    valid = np.array([s["confidence_valid"] for s in scored], bool)
    conf = np.array([s["confidence"] if s["confidence_valid"] else 0.0 for s in scored])
    summary = metrics.calibration_summary(
        correct,
        conf,
        valid,
        np.array([s["format_ok"] for s in scored], bool),
        n_bins=n_bins,
        invalid_confidence=invalid_confidence,
    )
    groups: dict = {}
    for s in scored:
        groups.setdefault(s["id"], []).append(s["correct"])
    sizes = {len(g) for g in groups.values()}
    summary["n_questions"] = len(groups)
    if len(sizes) == 1 and (n := sizes.pop()) > 1:
        table = np.array(list(groups.values()), np.float32)  # [B, G]
        ks = sorted({k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k <= n} | {n})
        summary["pass@k"] = {str(k): float(np.mean(metrics.pass_at_k(table, k))) for k in ks}
    ids = {key: i for i, key in enumerate(groups)}
    intervals = stats.calibration_intervals(
        correct,
        np.where(valid, conf, invalid_confidence),
        clusters=np.array([ids[s["id"]] for s in scored]),
        n_bins=n_bins,
    )
    # 95% bootstrap intervals over questions (the samples of one id move together)
    summary["intervals"] = {name: iv.to_dict() for name, iv in intervals.items()}
    summary["grade_methods"] = dict(Counter(s["grade_method"] for s in scored))
    summary["format_reasons"] = dict(
        Counter(s["format_reason"] for s in scored if s["format_reason"])
    )
    return summary


def run(args) -> int:
    if args.completions is None:
        if args.config is not None:
            if args.workdir is None:
                raise CoreaError("evaluate --config needs --workdir=DIR")
            from corea_jax.cascade import CascadeConfig
            from corea_jax.cascade.pipeline import evaluate

            evaluate(CascadeConfig.from_config(args.config), args.workdir)
            return 0
        raise CoreaError("evaluate: give --completions FILE.jsonl")
    fmt = parsing.get_format(args.format)
    if args.think_prefilled:
        import dataclasses

        fmt = dataclasses.replace(fmt, think_prefilled=True)
    if args.bins < 1:
        raise CoreaError(f"--bins={args.bins}: must be >= 1")
    if not 0.0 <= args.invalid_confidence <= 1.0:
        raise CoreaError(f"--invalid-confidence={args.invalid_confidence}: must be in [0, 1]")
    if args.time_limit <= 0:
        raise CoreaError(f"--time-limit={args.time_limit}: must be > 0")
    rows = read_rows(args.completions)
    out_dir = args.output or args.completions.with_suffix(".eval")
    workers = args.workers if args.workers is not None else min(os.cpu_count() or 1, len(rows))
    with Grader(workers=workers, options=GradingConfig(time_limit_s=args.time_limit)) as grader:
        scored = score_rows(rows, fmt, grader)
    summary = summarize(scored, args.bins, args.invalid_confidence)
    summary["input"] = str(args.completions)
    try:
        text = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in scored)
        write_atomic(out_dir / "scored.jsonl", text)
        write_atomic(out_dir / "metrics.json", json.dumps(summary, indent=2) + "\n")
    except OSError as e:
        raise CoreaError(f"{out_dir}: cannot write results ({e.strerror})") from None
    fmt_num = lambda x: "n/a" if x is None else f"{x:.4f}"
    print(
        f"{len(scored)} rows, {summary['n_questions']} questions: "
        f"pass@1 {fmt_num(summary['pass@1'])}, format {fmt_num(summary['format_rate'])}, "
        f"ECE {fmt_num(summary['ece'])}, Brier {fmt_num(summary['brier'])}, "
        f"AUROC {fmt_num(summary['auroc'])}"
        + (f" ({summary['auroc_reason']})" if summary["auroc_reason"] else "")
    )
    iv = summary["intervals"]
    print(
        "95% intervals over questions: "
        + ", ".join(
            f"{name} [{fmt_num(iv[name]['low'])}, {fmt_num(iv[name]['high'])}]"
            for name in ("pass@1", "ece", "brier", "auroc")
        )
    )
    print(f"wrote {out_dir / 'scored.jsonl'} and {out_dir / 'metrics.json'}")
    return 0

"""Completion text -> answer, confidence, format and grade, and the metrics over them.

  parsing.py          the output layout (<think>/<answer>/<confidence>, boxed) -> ParsedCompletion
  grading.py          answer equivalence: math (sympy / math-verify), numeric, choice, yes/no
  grading_workers.py  Grader: grading in worker processes with time and memory limits
  score.py            score_texts: THE one scoring path (training, evaluate, the cascade, serve)
  metrics.py          pass@k, mean@k, ECE (equal width / mass), Brier, AUROC (pooled and
                      within group), risk-coverage and AURC, reliability bins, per-group summary
  stats.py            bootstrap intervals over questions (and seeds), paired differences, verdicts

Text is handled here, once, on the host; what leaves are arrays (`Scored`). `Grader` is
imported from `grading_workers` itself: that module is also the workers' `python -m` entry.
`metrics` is not re-exported: it imports JAX, which this package (and so every grading
worker) must not load; use `from corea_jax.scoring import metrics`.
"""

from corea_jax.scoring.grading import GradeTask, GradingConfig
from corea_jax.scoring.parsing import FORMATS, OutputFormat, ParsedCompletion, parse_completion
from corea_jax.scoring.score import Scored, ScoreItem, score_texts
from corea_jax.scoring.stats import (
    Interval,
    bootstrap,
    calibration_intervals,
    mean_sd,
    paired_difference,
    seed_question_bootstrap,
    verdict,
)

__all__ = [
    "FORMATS",
    "GradeTask",
    "GradingConfig",
    "Interval",
    "OutputFormat",
    "ParsedCompletion",
    "ScoreItem",
    "Scored",
    "bootstrap",
    "calibration_intervals",
    "mean_sd",
    "paired_difference",
    "parse_completion",
    "score_texts",
    "seed_question_bootstrap",
    "verdict",
]

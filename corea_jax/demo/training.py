"""What the GRPO runs' per-step diagnostics say (`corea_jax.rl.diagnostics` in metrics.jsonl).

Why a stated confidence did or did not learn is visible during training, not only in the
final ECE: per difficulty level, the batch's mean stated confidence beside that level's accuracy
(`level/L/confidence`, `level/L/accuracy`); the within-group SD of q (`confidence_group_sd`:
a group whose samples all state one value gives the calibration term nothing to compare);
the shares of all-correct and all-wrong groups (no correctness signal there); and the batch
AUROC of q against correctness (`batch_auroc`). A batch holds 8 prompts, so each figure is
averaged over a window of steps (`WINDOW`) before it is compared or plotted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

WINDOW = 30  # steps averaged at the start and at the end of a run
SUMMARY_KEYS = ("accuracy", "confidence_mean", "batch_ece", "batch_auroc",
                "confidence_group_sd", "groups_all_correct", "groups_all_wrong")  # fmt: skip
_LEVEL = re.compile(r"^level/(.+)/(confidence|accuracy)$")


def read_metrics(run_dir: Path) -> list[dict]:
    """The GRPO steps of `run_dir/metrics.jsonl` (evaluation-only lines dropped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [m for m in lines if "accuracy" in m]


def _nanmean(values) -> float | None:
    v = np.array([np.nan if x is None else x for x in values], float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else None


def window_means(steps: list[dict], window: int = WINDOW) -> dict:
    """`{"first": {key: mean}, "last": {key: mean}}` over the first and last `window` steps."""
    out = {}
    for name, part in (("first", steps[:window]), ("last", steps[-window:])):
        out[name] = {k: _nanmean([m.get(k) for m in part]) for k in SUMMARY_KEYS}
    return out


def level_curves(steps: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    """`{level: {"step", "confidence", "accuracy"}}`; a step without the level is NaN."""
    levels = sorted({_LEVEL.match(k).group(1) for m in steps for k in m if _LEVEL.match(k)})
    x = np.array([m["step"] for m in steps], float)
    out = {}
    for level in levels:
        conf = [m.get(f"level/{level}/confidence") for m in steps]
        acc = [m.get(f"level/{level}/accuracy") for m in steps]
        out[level] = {
            "step": x,
            "confidence": np.array([np.nan if v is None else v for v in conf], float),
            "accuracy": np.array([np.nan if v is None else v for v in acc], float),
        }
    return out


def smooth(values: np.ndarray, window: int = 15) -> np.ndarray:
    """A trailing mean over the last `window` finite values (NaN steps skipped)."""
    out = np.full(values.shape, np.nan)
    for i in range(values.size):
        part = values[max(0, i - window + 1) : i + 1]
        part = part[np.isfinite(part)]
        if part.size:
            out[i] = part.mean()
    return out


def training_summary(policies: dict[str, Path]) -> dict[str, dict]:
    """Per policy run (`{slm name: run directory}`): the start and end window means and, per
    level, the end window's mean confidence and accuracy."""
    out = {}
    for name, run_dir in policies.items():
        steps = read_metrics(run_dir)
        if not steps:
            continue
        curves = level_curves(steps[-WINDOW:])
        out[name] = window_means(steps) | {
            "steps": len(steps),
            "levels_last": {
                level: {
                    "confidence": _nanmean(c["confidence"]),
                    "accuracy": _nanmean(c["accuracy"]),
                }
                for level, c in curves.items()
            },
        }
    return out

"""Per-step training metrics to JSONL and TensorBoard, and MFU from a table of hardware peaks.

Only process 0 writes. JSONL is the record of truth (one strict-JSON object per step: NaN and
inf become null); TensorBoard (through tensorboardX, no TensorFlow needed) gets every scalar and
the confidence histogram for live curves. A step's keys are whatever its metrics hold: the
per-level diagnostics (`corea_jax.rl.diagnostics`, "level/<L>/confidence" and
"level/<L>/accuracy") appear only on steps whose batch has a question of that level, so a
TensorBoard curve of a level has gaps, not zeros.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax

# Dense bf16 matmul peaks per chip in FLOP/s (vendor figures). MFU is reported only where the
# device kind is listed; a CPU has no reliable figure.
PEAK_FLOPS = {
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100": 312e12,
    "NVIDIA B200": 2250e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
}


def peak_flops_per_chip(device=None) -> float | None:
    kind = (device or jax.devices()[0]).device_kind
    for name, peak in PEAK_FLOPS.items():
        if kind.startswith(name):
            return peak
    return None


def train_flops(num_params: int, tokens: int) -> float:
    """Forward + backward matmul FLOPs of a dense decoder: 6 x parameters x tokens."""
    return 6.0 * num_params * tokens


class MetricsWriter:
    def __init__(self, workdir: Path, tensorboard: bool = True):
        self.enabled = jax.process_index() == 0
        self.jsonl = workdir / "metrics.jsonl"
        self.tb = None
        if self.enabled and tensorboard:
            # tensorboardX (and protobuf under it) is imported only when TensorBoard is on.
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        safe = {k: _json_safe(v) for k, v in metrics.items()}
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(safe) + "\n")
        if self.tb is not None:
            for key, value in metrics.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self.tb.add_scalar(key, value, step)
            hist = metrics.get("confidence_hist")
            if hist and sum(hist):
                edges = [i / len(hist) for i in range(len(hist) + 1)]
                self.tb.add_histogram_raw(
                    "confidence", min=0.0, max=1.0, num=sum(hist), sum=0.0, sum_squares=0.0,
                    bucket_limits=edges[1:], bucket_counts=hist, global_step=step,
                )  # fmt: skip

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

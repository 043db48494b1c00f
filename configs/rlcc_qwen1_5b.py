"""Qwen2.5-1.5B-Instruct as the SLM (the paper's smaller-SLM ablation), on DeepMath16K.

    corea-jax train --config=configs/rlcc_qwen1_5b.py:corea --workdir=DIR \
        --config.model.path=/path/to/Qwen2.5-1.5B-Instruct --config.data.path=/path/to/DeepMath-103K

Serves PAPER.md "Models": the SLM ablation (Qwen2.5-1.5B-Instruct in place of the 7B), with the
same rewards as configs/rlcc_qwen7b.py: ARG = corea (default) | rlvr | brier | corea_l2 |
corea_kl (see configs/rlcc_common.py). Learning rate 3e-6, PAPER.md's default for the 1.5B
model (1e-6 for 7B/8B) [open]. `,smoke` after any ARG runs the same code path with a tiny
from-scratch Qwen2 model on the synthetic task, on a CPU:

    corea-jax train --config=configs/rlcc_qwen1_5b.py:corea,smoke --workdir=/tmp/rlcc_smoke
"""

from .rlcc_common import PRESETS, parse_arg, rlcc_config, smoke


def get_config(arg=None):
    preset, is_smoke = parse_arg(arg, PRESETS, default="corea")
    c = rlcc_config("Qwen/Qwen2.5-1.5B-Instruct", preset, learning_rate=3e-6)
    return smoke(c) if is_smoke else c

"""Llama-3.1-8B-Instruct as the SLM (the paper's other-family ablation), on DeepMath16K.

    corea-jax train --config=configs/rlcc_llama8b.py:corea --workdir=DIR \
        --config.model.path=/path/to/Llama-3.1-8B-Instruct --config.data.path=/path/to/DeepMath-103K

Serves PAPER.md "Models": the SLM ablation across model families, with the same rewards as
configs/rlcc_qwen7b.py: ARG = corea (default) | rlvr | brier | corea_l2 | corea_kl (see
configs/rlcc_common.py). Learning rate 1e-6 (the configs/common.py default for 7B/8B). The
prompt goes through the checkpoint's own chat template (Llama 3's), so nothing here is
Qwen-specific. `,smoke` after any ARG runs the same training code path on a CPU:

    corea-jax train --config=configs/rlcc_llama8b.py:corea,smoke --workdir=/tmp/rlcc_smoke

The smoke model is a tiny from-scratch model of the Llama family (no biases, untied head, rope
theta 500000, Llama 3's header/<|eot_id|> chat template; corea_jax/models/scratch.py).
"""

from .rlcc_common import PRESETS, parse_arg, rlcc_config, smoke


def get_config(arg=None):
    preset, is_smoke = parse_arg(arg, PRESETS, default="corea")
    c = rlcc_config("meta-llama/Llama-3.1-8B-Instruct", preset)
    if is_smoke:
        c = smoke(c)
        c.model.scratch.spec.family = "llama"
    return c

"""Qwen2.5-7B-Instruct, the paper's main SLM, trained on DeepMath16K with each reward.

    corea-jax train --config=configs/rlcc_qwen7b.py:corea --workdir=DIR \
        --config.model.path=/path/to/Qwen2.5-7B-Instruct --config.data.path=/path/to/DeepMath-103K

ARG (the reward, corea_jax.rl.rewards.PRESETS; see configs/rlcc_common.py):
  corea     L1 to the group accuracy: the COREA SLM of every row of PAPER.md "Results to aim at"
            (DeepMath500, OOD math, OOD non-math) and of its ECE 0.12 / AUROC 0.72.
  rlvr      correctness + format only: the "RLVR-SLM" deferral baselines of PAPER.md "Baseline
            deferral signals" (verbalized confidence and average token probability, which
            `corea-jax cascade` computes; the hidden-state probe is not built yet: issue 19).
  brier     RLCR's sample-level Brier reward: the "Brier-SLM" baseline of the same comparison.
  corea_l2  L2 to the group accuracy  } the calibration-distance ablation
  corea_kl  KL to the group accuracy  } (PAPER.md "Training": L1 vs L2 vs KL).
Learning rate 1e-6, the configs/common.py default for the 7B/8B models. Evaluate the exported
policy (DIR/export) with configs/eval_*.py. `:corea,smoke` (any ARG plus `,smoke`) runs the same
code path with a tiny from-scratch Qwen2 model on the synthetic task, on a CPU:

    corea-jax train --config=configs/rlcc_qwen7b.py:corea,smoke --workdir=/tmp/rlcc_smoke
"""

from .rlcc_common import PRESETS, parse_arg, rlcc_config, smoke


def get_config(arg=None):
    preset, is_smoke = parse_arg(arg, PRESETS, default="corea")
    c = rlcc_config("Qwen/Qwen2.5-7B-Instruct", preset)
    return smoke(c) if is_smoke else c

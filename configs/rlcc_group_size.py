"""Group-size ablation: COREA (L1) training of Qwen2.5-7B-Instruct with G samples per question.

    corea-jax train --config=configs/rlcc_group_size.py:16 --workdir=DIR \
        --config.model.path=/path/to/Qwen2.5-7B-Instruct --config.data.path=/path/to/DeepMath-103K

ARG = G, one of 4 | 8 | 16 (G=8 is configs/rlcc_qwen7b.py:corea itself). The calibration target
p_hat is the accuracy of the G samples of a question, so G sets how fine and how noisy that
target is (p_hat takes G + 1 values); this serves PAPER.md "Training" (the group-level target)
[open: the paper's exact G values; ours are 4, 8, 16]. Everything else is the main run's:
32 questions per step, so a step sees 32 x G completions. The number of micro-batches scales
with G so each still holds 32 sequences, as in the G=8 run: same memory per micro-batch, same
optimizer step. `,smoke` after G (e.g. `:16,smoke`) runs that G with a tiny from-scratch Qwen2
model on the synthetic task, on a CPU:

    corea-jax train --config=configs/rlcc_group_size.py:16,smoke --workdir=/tmp/rlcc_smoke
"""

from .rlcc_common import parse_arg, rlcc_config, smoke

GROUP_SIZES = ("4", "8", "16")


def get_config(arg=None):
    group_size, is_smoke = parse_arg(arg, GROUP_SIZES, default="8")
    c = rlcc_config("Qwen/Qwen2.5-7B-Instruct", "corea")
    g, main_g = int(group_size), c.rollout.group_size
    c.rollout.group_size = g
    c.train.micro_batches = c.train.micro_batches * g // main_g
    return smoke(c, keep=("rollout.group_size",)) if is_smoke else c

"""The paper's comparison on out-of-domain math (MATH500, GSM8K, OlympiadBench): every
collaboration system side by side (PAPER.md "Results to aim at", row "OOD math").

    corea-jax compare --config=configs/compare_ood_math.py --workdir=DIR \
        --config.slms.original=Qwen2.5-7B-Instruct --config.slms.rlvr=RLVR/export \
        --config.slms.brier=BRIER/export --config.slms.corea=COREA/export \
        --config.cascade.llm.base_url=http://HOST:8000/v1
    corea-jax compare --config=configs/compare_ood_math.py:smoke --workdir=/tmp/c   # CPU
"""

from .compare_common import compare_config


def get_config(arg=None):
    return compare_config(["math500", "gsm8k", "olympiadbench"], arg)

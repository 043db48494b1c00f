"""The paper's comparison in domain, on DeepMath500 (the test side of the split the training
configs use; PAPER.md "Results to aim at", row "DeepMath500").

    corea-jax compare --config=configs/compare_deepmath500.py --workdir=DIR \
        --config.slms.original=Qwen2.5-7B-Instruct --config.slms.rlvr=RLVR/export \
        --config.slms.brier=BRIER/export --config.slms.corea=COREA/export \
        --config.cascade.llm.base_url=http://HOST:8000/v1
    corea-jax compare --config=configs/compare_deepmath500.py:smoke --workdir=/tmp/c   # CPU
"""

from .compare_common import compare_config


def get_config(arg=None):
    return compare_config(["deepmath500"], arg)

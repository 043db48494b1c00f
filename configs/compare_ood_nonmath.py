"""The paper's comparison out of domain, non-math: GPQA and CommonsenseQA (PAPER.md "Results to
aim at", row "OOD non-math"). GPQA is not redistributed: pass
`--config.cascade.datasets.gpqa.path=gpqa_main.csv`, or it is skipped with a note.

    corea-jax compare --config=configs/compare_ood_nonmath.py --workdir=DIR \
        --config.slms.original=Qwen2.5-7B-Instruct --config.slms.rlvr=RLVR/export \
        --config.slms.brier=BRIER/export --config.slms.corea=COREA/export \
        --config.cascade.llm.base_url=http://HOST:8000/v1
    corea-jax compare --config=configs/compare_ood_nonmath.py:smoke --workdir=/tmp/c   # CPU
"""

from .compare_common import compare_config


def get_config(arg=None):
    return compare_config(["gpqa", "commonsenseqa"], arg)

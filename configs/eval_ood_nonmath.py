"""Out-of-domain non-math: GPQA and CommonsenseQA (PAPER.md "Results to aim at", row "OOD
non-math": LLM alone ~71 pass@1, COREA 69.7 at -16.8% cost).

    corea-jax cascade --config=configs/eval_ood_nonmath.py --workdir=DIR \
        --config.slm.path=RUN/export --config.llm.base_url=http://HOST:8000/v1 \
        --config.datasets.gpqa.path=/path/to/gpqa_main.csv

GPQA is not redistributed (shared/data/gpqa/SCHEMA.md): without a path it is skipped with a
message and only CommonsenseQA is evaluated. `evaluate` takes the same flags. `:smoke` runs a
tiny random model on 6 CommonsenseQA questions against the SIMULATED LLM, on a CPU:

    corea-jax cascade --config=configs/eval_ood_nonmath.py:smoke --workdir=/tmp/c
"""

from .eval_common import eval_config, smoke


def get_config(arg=None):
    c = eval_config(["gpqa", "commonsenseqa"])
    return smoke(c) if arg == "smoke" else c

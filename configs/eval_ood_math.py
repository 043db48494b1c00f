"""Out-of-domain math: MATH500, GSM8K, OlympiadBench (PAPER.md "Results to aim at", row "OOD
math": LLM alone 79.6 pass@1, COREA 77.9 at -21.5% cost).

    corea-jax evaluate --config=configs/eval_ood_math.py --workdir=DIR \
        --config.slm.path=RUN/export
    corea-jax cascade --config=configs/eval_ood_math.py --workdir=DIR \
        --config.slm.path=RUN/export --config.llm.base_url=http://HOST:8000/v1

The report has one section per dataset and "all" (the three pooled). `:smoke` runs a tiny
random model on 6 questions of each against the SIMULATED LLM, on a CPU:

    corea-jax cascade --config=configs/eval_ood_math.py:smoke --workdir=/tmp/c
"""

from .eval_common import eval_config, smoke


def get_config(arg=None):
    c = eval_config(["math500", "gsm8k", "olympiadbench"])
    return smoke(c, per_dataset=4) if arg == "smoke" else c

"""In-domain evaluation on DeepMath500 (PAPER.md "Results to aim at", row "DeepMath500": LLM alone
~69 pass@1, COREA 67.5 at -6.7% cost).

    corea-jax evaluate --config=configs/eval_deepmath500.py --workdir=DIR \
        --config.slm.path=RUN/export
    corea-jax cascade --config=configs/eval_deepmath500.py --workdir=DIR \
        --config.slm.path=RUN/export --config.llm.base_url=http://HOST:8000/v1

DeepMath500 is our seeded 500-question test split of the DeepMath subset
(corea_jax/data/splits.py). `:smoke` runs a tiny random model on 6 questions against the
SIMULATED LLM, on a CPU, in seconds:

    corea-jax cascade --config=configs/eval_deepmath500.py:smoke --workdir=/tmp/c
"""

from .eval_common import eval_config, smoke


def get_config(arg=None):
    c = eval_config(["deepmath500"])
    return smoke(c) if arg == "smoke" else c

"""`corea-jax compare`: the paper's table of collaboration systems from one command.

    corea-jax compare --config=configs/compare_ood_math.py --workdir=DIR \
        --config.slms.original=MODEL_DIR --config.slms.rlvr=RLVR_RUN/export \
        --config.slms.brier=BRIER_RUN/export --config.slms.corea=COREA_RUN/export
    corea-jax compare --config=configs/compare_ood_math.py:smoke --workdir=/tmp/c   # CPU

Each SLM runs the cascade once (DIR/slms/NAME/: its own report) with the signals its rows need
(verbalized, AvgProb, a hidden-state probe, a pre-generation router); the LLM answers every
question once for all of them (DIR/llm_cache.sqlite). Writes DIR/compare.md, compare.csv and
compare.json: one row per system in the paper's naming (SLM-Verb, RLVR-SLM-Verb,
RLVR-SLM-AvgProb, RLVR-SLM-Probe, Router+RLVR-SLM, Brier-SLM-Verb, COREA), each SLM alone and
the LLM alone, per dataset group. See corea_jax/cascade/compare.py.
"""

from pathlib import Path

from corea_jax.errors import CoreaError

TAKES_CONFIG = True


def add_arguments(parser):
    parser.add_argument("--workdir", type=Path, required=True, help="run directory")


def run(args) -> int:
    if args.config is None:
        raise CoreaError(
            "compare needs --config=configs/FILE.py (e.g. configs/compare_ood_math.py)"
        )
    from corea_jax.cascade.compare import CompareConfig
    from corea_jax.cascade.compare import run as compare_run

    compare_run(CompareConfig.from_config(args.config), args.workdir)
    return 0

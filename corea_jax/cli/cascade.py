"""`corea-jax cascade`: the SLM -> LLM cascade, deferring by confidence, with costs and reports.

    corea-jax cascade --config=configs/FILE.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]

The SLM (`slm.path`: a HF model directory or a trained run's export) answers every question of
the config's datasets; the LLM (`llm.base_url`, `llm.model`, the key in the environment variable
named by `llm.api_key_env`) answers every question once; tau is chosen on a calibration split by
each rule of `tau.rules` and reported on the test split, for the verbalized confidence and the
AvgProb signal. Writes DIR/questions.jsonl, summary.json, summary.csv, report.md and
report/GROUP/*.png. SLM answers (DIR/slm/) and LLM answers (DIR/llm_cache.sqlite) are cached:
running again resumes, and a finished run re-runs with no sampling and no LLM call.
`--config.llm.simulated=true` uses a SIMULATED LLM in-process (see configs/eval_common.py).
"""

from pathlib import Path

from corea_jax.errors import CoreaError

TAKES_CONFIG = True


def add_arguments(parser):
    parser.add_argument("--workdir", type=Path, required=True, help="run directory")


def run(args) -> int:
    if args.config is None:
        raise CoreaError("cascade needs --config=configs/FILE.py (e.g. configs/eval_ood_math.py)")
    from corea_jax.cascade import CascadeConfig
    from corea_jax.cascade.pipeline import run as cascade_run

    cascade_run(CascadeConfig.from_config(args.config), args.workdir)
    return 0

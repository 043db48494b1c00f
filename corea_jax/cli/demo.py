"""`corea-jax demo`: COREA's method end to end, offline, on a CPU (the library: corea_jax/demo).

    corea-jax demo [--workdir DIR] [--config=configs/demo.py[:quick]] [--config.KEY=VALUE ...]

Builds a tiny model from scratch, warms it up with SFT, trains RLVR, Brier and COREA policies
with GRPO, runs the cascade against a clearly labelled SIMULATED LLM (in-process), and writes
DIR/report.md. Re-running with the same --workdir resumes and reuses what is done.
"""

from pathlib import Path

TAKES_CONFIG = True
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.py"


def add_arguments(parser):
    parser.add_argument("--workdir", type=Path, default=Path("workdirs/demo"))
    parser.add_argument(
        "--warmup-only",
        action="store_true",
        help="stop after the SFT warm-up and print its model directory (with "
        "--config.warmup.model='' this regenerates the bundled warm start)",
    )


def run(args) -> int:
    from corea_jax.demo import DemoConfig
    from corea_jax.demo import run as demo_run
    from corea_jax.errors import CoreaError

    if args.config is None:  # the CLI loads DEFAULT_CONFIG whenever it exists
        raise CoreaError(f"{DEFAULT_CONFIG}: demo config not found; pass --config=FILE.py")
    demo_run(DemoConfig.from_config(args.config), args.workdir, warmup_only=args.warmup_only)
    return 0

"""The `corea-jax` console script (also `python -m corea_jax`).

Each subcommand lives in `corea_jax/cli/NAME.py` with `add_arguments(parser)` and
`run(args) -> int`. Commands that take an experiment config accept
`--config=configs/FILE.py[:ARG]` and any number of `--config.KEY=VALUE` overrides; argparse
cannot declare those dynamically: they are what `parse_known_args` leaves over, and
ml_collections parses them into `args.config` (a ConfigDict, or None). Errors a user can fix
end as one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from corea_jax.cli.config import load_config
from corea_jax.errors import CoreaError as UserError

COMMANDS = {
    "generate": "Sample completions from a model directory with the batched KV-cache sampler.",
    "train": "GRPO training with a confidence-calibration reward (RLVR / Brier / COREA).",
    "evaluate": "Score completions (answer, confidence, calibration metrics) or evaluate an SLM.",
    "cascade": "SLM -> LLM cascade evaluation with deferral by confidence and cost accounting.",
    "demo": "The whole method end to end on a synthetic task, offline, on a CPU.",
    "serve": "The trained cascade as an OpenAI-compatible endpoint, batching concurrent requests.",
    "plan": "Will a config fit a TPU slice? Its update and rollout compiled ahead of time.",
    "compare": "The paper's table: every SLM and deferral signal (verbalized, AvgProb, probe, "
    "router) side by side.",
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corea-jax",
        description="COREA in JAX: confidence-calibrated small/large LLM cascades.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"corea_jax.cli.{name}")
        p = sub.add_parser(
            name,
            help=help_text,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if getattr(module, "TAKES_CONFIG", False):
            p.add_argument(
                "--config",
                default=None,
                metavar="FILE.py[:ARG]",
                help="experiment config file; override keys with --config.KEY=VALUE",
            )
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = _build_parser()
        # `--config.KEY=VALUE` words are not argparse options; they are left over, in order,
        # and handed to ml_collections (corea_jax.cli.config), which types and checks them.
        args, overrides = parser.parse_known_args(argv)
        module = args._module
        if overrides and not overrides[0].startswith("--config."):
            parser.error(f"unrecognized arguments: {' '.join(overrides)}")
        if getattr(module, "TAKES_CONFIG", False):
            default = getattr(module, "DEFAULT_CONFIG", None)
            if args.config is None and default is not None and default.exists():
                args.config = str(default)  # e.g. the demo: overrides apply to its default
            if args.config is None and overrides:
                raise UserError("--config.KEY=VALUE overrides need --config=FILE.py")
            args.config = load_config(args.config, overrides) if args.config is not None else None
        elif overrides:
            raise UserError(f"'{args.command}' takes no --config overrides")
        return int(module.run(args) or 0)
    except UserError as e:
        print(f"corea-jax: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

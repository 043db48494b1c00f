"""The `corea-jax` console script (also `python -m corea_jax`).

Each subcommand lives in `corea_jax/cli/NAME.py` with `add_arguments(parser)` and
`run(args) -> int`. Commands that take an experiment config accept
`--config=configs/FILE.py[:ARG]` and any number of `--config.KEY=VALUE` overrides; argparse
cannot declare those dynamically: they are what `parse_known_args` leaves over, and
ml_collections parses them into `args.config` (a ConfigDict, or None). Errors a user can fix
end as one line on stderr and a non-zero exit.

Library notices that mean nothing to a user of this CLI are silenced before anything heavy is
imported (`quiet_libraries`), through each library's own switch and only where the user did not
set it; warnings, errors and our own messages are untouched:
- transformers' "PyTorch was not found. Models won't be available..." (printed at import where
  torch is absent: we use transformers for tokenizers only) by
  `TRANSFORMERS_NO_ADVISORY_WARNINGS=1`, which in transformers 5 mutes exactly that notice (its
  only `warning_advice`);
- libtpu's failed start-up ("Failed to find host bounds...", "unexpected worker hostname...",
  a source location trace), printed from C++ whenever libtpu is installed (`jax[tpu]`, which the
  `test` extra brings) and JAX probes for a TPU on a machine without one, by
  `JAX_PLATFORMS=cpu` only where JAX would end on the CPU anyway: JAX_PLATFORMS,
  JAX_FORCE_TPU_INIT and PJRT_NAMES_AND_LIBRARY_PATHS unset, no Google (TPU) or NVIDIA device on
  a readable PCI bus, no /dev/nvidia*, /dev/kfd (ROCm), /dev/accel* or /dev/vfio/N (TPU), and no
  PJRT plugin besides the CUDA ones (which JAX skips without a visible NVIDIA GPU). Any
  accelerator, or a doubt, leaves JAX's own probing as it is; `JAX_PLATFORMS=` (set, empty)
  restores it everywhere. The variable is inherited by the processes the command starts.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import importlib.metadata
import importlib.util
import os
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


def quiet_libraries(environ=os.environ) -> None:
    """Silences the library notices listed in the module docstring (before their import)."""
    environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "jax" not in sys.modules and jax_would_run_on_cpu(environ):
        environ["JAX_PLATFORMS"] = "cpu"


def jax_would_run_on_cpu(environ=os.environ, root: str = "/") -> bool:
    """True when JAX, probing by itself, would end on the CPU after libtpu's failed (and noisy)
    TPU start-up; False when libtpu is absent (nothing to silence) or on any doubt."""
    if any(k in environ for k in ("JAX_PLATFORMS", "JAX_FORCE_TPU_INIT",
                                  "PJRT_NAMES_AND_LIBRARY_PATHS")):  # fmt: skip
        return False
    if importlib.util.find_spec("libtpu") is None:
        return False
    join = lambda *p: os.path.join(root, *p)  # noqa: E731
    vendor_files = glob.glob(join("sys/bus/pci/devices/*/vendor"))
    if not vendor_files:  # no PCI bus to read (a sandbox): no way to tell
        return False
    for vendor_file in vendor_files:
        try:
            with open(vendor_file) as f:
                if f.read().strip() in ("0x1ae0", "0x10de"):  # Google (TPU), NVIDIA
                    return False
        except OSError:
            return False
    devices = ("dev/nvidia[0-9]*", "dev/kfd", "dev/accel[0-9]*", "dev/vfio/[0-9]*")
    if any(glob.glob(join(pattern)) for pattern in devices):  # NVIDIA, ROCm, TPU
        return False
    plugins = {e.name for e in importlib.metadata.entry_points(group="jax_plugins")}
    try:
        namespace = importlib.util.find_spec("jax_plugins")
    except (ImportError, ValueError):
        namespace = None
    if namespace is not None and namespace.submodule_search_locations:
        for location in namespace.submodule_search_locations:
            plugins.update(os.listdir(location) if os.path.isdir(location) else ())
    return all("cuda" in name or name.startswith("__") for name in plugins)


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
    quiet_libraries()
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

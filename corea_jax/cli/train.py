"""`corea-jax train`: GRPO (RLVR / Brier / COREA rewards) or SFT warm-up.

    corea-jax train --config=configs/FILE.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]

Checkpoints (orbax, keep-last-N), `metrics.jsonl` and the exported HF model directory
(`DIR/export`) go to --workdir; running again with the same --workdir resumes from the latest
checkpoint. The reward preset, loss and optimizer options are keys of the config (see
configs/common.py). Multi-host: run the same command on every host (see
corea_jax/parallel/distributed.py).
"""

from pathlib import Path

from corea_jax.errors import CoreaError

TAKES_CONFIG = True


def add_arguments(parser):
    parser.add_argument("--workdir", type=Path, required=True, help="run directory")
    group = parser.add_argument_group(
        "multi-process", "one process per host; TPU pods and SLURM jobs are detected by themselves"
    )
    group.add_argument("--coordinator", default=None, help="HOST:PORT of process 0")
    group.add_argument("--num-processes", type=int, default=None)
    group.add_argument("--process-id", type=int, default=None)


def run(args) -> int:
    if args.config is None:
        raise CoreaError("train needs --config=configs/FILE.py")
    # Imported here, not at the top: every command module is imported to build the parser, and
    # `corea-jax --help` should not pay for JAX, flax and orbax.
    from corea_jax.parallel import distributed
    from corea_jax.rl.train import run as train_run

    distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    train_run(args.config, args.workdir)
    return 0

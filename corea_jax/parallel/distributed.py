"""Multi-process (multi-host) start-up: `jax.distributed.initialize` from flags or environment.

One process per host (per GPU on a GPU cluster). Every process runs the same program; arrays are
global, each process feeds and reads only its own devices' slices (`sharding.put_global`,
`sharding.to_host`), checkpoints are written by orbax collectively, and logs, metrics and exports
by process 0 only.

Where the coordinates come from, in order:
  1. explicit `--coordinator HOST:PORT --num-processes N --process-id I` (or the environment
     variables COREA_COORDINATOR, COREA_NUM_PROCESSES, COREA_PROCESS_ID);
  2. a TPU pod slice or a SLURM job with more than one task: `jax.distributed.initialize()`
     detects them itself;
  3. otherwise a single process: nothing to do.
On CPU, collectives go through gloo (`jax_cpu_collectives_implementation`), so the same code
is tested with two local processes on loopback.
"""

from __future__ import annotations

import os

import jax

from corea_jax.errors import CoreaError


def initialize(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
    """Initialises jax.distributed when this is a multi-process run; returns whether it is."""
    coordinator = coordinator or os.environ.get("COREA_COORDINATOR")
    if num_processes is None and os.environ.get("COREA_NUM_PROCESSES"):
        num_processes = int(os.environ["COREA_NUM_PROCESSES"])
    if process_id is None and os.environ.get("COREA_PROCESS_ID"):
        process_id = int(os.environ["COREA_PROCESS_ID"])
    explicit = (coordinator, num_processes, process_id)
    if any(x is not None for x in explicit):
        if any(x is None for x in explicit):
            raise CoreaError(
                "multi-process run: --coordinator, --num-processes and --process-id go together "
                f"(got {coordinator!r}, {num_processes!r}, {process_id!r})"
            )
        if (
            jax.config.jax_platforms in (None, "", "cpu")
            or os.environ.get("JAX_PLATFORMS") == "cpu"
        ):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, num_processes, process_id)
        return True
    slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    tpu_pod = "TPU_WORKER_HOSTNAMES" in os.environ and "," in os.environ["TPU_WORKER_HOSTNAMES"]
    if slurm_tasks > 1 or tpu_pod:
        jax.distributed.initialize()
        return True
    return False

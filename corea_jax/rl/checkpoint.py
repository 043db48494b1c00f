"""Checkpoints: the TrainState (orbax, keep-last-N, async) and a JSON record beside it.

The record (`RunMetadata`) holds what resuming needs besides the parameters: the data
iterator's grain state (`corea_jax.data.pipeline`), the data position and the seeds it follows
from, and the run's config. Two counters: `step` counts rollout steps (it names the checkpoint
and gives the data position and rollout seeds), `updates` the optimizer updates (the
TrainState's own counter, which drives the learning-rate schedule; `num_iterations` per step).
A resume whose `prompts_per_step`, `seed` or `num_iterations` differ from the checkpoint's is
refused, naming the key: it would silently change the data order or the schedule.

The TrainState saved is the master copy (float32 parameters and moments by default), so a
resumed mixed-precision run continues bit for bit.

Checkpoints are written only after finite steps (the loop stops on a non-finite one first),
so the last good checkpoint is never overwritten by a diverged state.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from corea_jax.atomic_files import write_atomic
from corea_jax.errors import CoreaError
from corea_jax.rl.rollout import rollout_seed
from corea_jax.rl.train_step import TrainState


@dataclasses.dataclass(frozen=True)
class RunMetadata:
    """What a checkpoint records beside the TrainState (stored as JSON)."""

    step: int  # rollout steps finished
    data_state: dict  # the grain iterator's state after this step's batch
    prompts_per_step: int
    seed: int
    config: str = "{}"  # the run's config as JSON
    num_iterations: int = 1  # updates per rollout step

    def to_json(self) -> dict:
        return {
            "step": self.step,
            "updates": self.step * self.num_iterations,
            "num_iterations": self.num_iterations,
            "data_position": self.step * self.prompts_per_step,
            "data_state": self.data_state,
            "prompts_per_step": self.prompts_per_step,
            "seed": self.seed,
            "rollout_seed_base": rollout_seed(self.seed, 0),
            "config": self.config,
        }


def checkpoint_manager(directory: Path, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=True, create=True
    )
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def save(
    manager: ocp.CheckpointManager,
    state: TrainState,
    meta: RunMetadata,
    *,
    force: bool = False,
) -> None:
    """Saves `state` at `meta.step` (a no-op when that step is already the latest)."""
    if manager.latest_step() == meta.step:
        return
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta.to_json())
    )
    manager.save(meta.step, args=args, force=force)


def restore(
    manager: ocp.CheckpointManager, like: TrainState, shardings
) -> tuple[TrainState, dict] | None:
    """The latest checkpoint's TrainState (placed on `shardings`) and its metadata, or None."""
    step = manager.latest_step()
    if step is None:
        return None
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), like, shardings
    )
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    restored = manager.restore(step, args=args)
    return restored["state"], dict(restored["meta"])


def check_resumable(saved: dict, run: RunMetadata, directory: Path) -> None:
    """Refuses a resume that would change the data order (a different batch size or seed) or
    the schedule (a different `num_iterations`; older checkpoints record none and had 1)."""
    ours = run.to_json()
    for key in ("prompts_per_step", "seed", "num_iterations"):
        theirs = saved.get(key, 1 if key == "num_iterations" else None)
        if theirs != ours[key]:
            raise CoreaError(
                f"{directory}: checkpoint {saved.get('step')} was trained with "
                f"train.{key}={theirs}, this run has {ours[key]}; "
                "resuming would change the data order or the schedule (use a new --workdir)"
            )


def data_state_of(saved: dict) -> dict:
    """The grain iterator state of a checkpoint; older checkpoints record only the step."""
    return saved.get("data_state") or {"next_index": saved["step"]}


def trim_metrics(path: Path, step: int) -> None:
    """Drops log lines of steps after `step` (logged, then lost to a crash before a checkpoint),
    so a resumed run's metrics.jsonl has each step once. Rewritten atomically, by process 0."""
    if not path.exists() or jax.process_index() != 0:
        return
    kept = [
        line for line in path.read_text().splitlines() if json.loads(line).get("step", 0) <= step
    ]
    write_atomic(path, "".join(line + "\n" for line in kept))

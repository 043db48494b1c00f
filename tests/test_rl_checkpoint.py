"""Checkpoints: the TrainState and its metadata round-trip; resumes that change the order are
refused; metrics of lost steps are trimmed."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from corea_jax.errors import CoreaError
from corea_jax.parallel.sharding import make_mesh
from corea_jax.rl import checkpoint as ckpt
from corea_jax.rl.train_step import TrainState


def _state(value: float, step: int) -> TrainState:
    return TrainState(jnp.asarray(step, jnp.int32), {"w": jnp.full((4,), value)}, ())


def _shardings(state):
    replicated = NamedSharding(make_mesh((1, -1, 1)), PartitionSpec())
    return jax.tree.map(lambda _: replicated, state)


def test_state_and_metadata_round_trip(tmp_path):
    manager = ckpt.checkpoint_manager(tmp_path / "checkpoints", keep=2)
    assert ckpt.restore(manager, _state(0.0, 0), _shardings(_state(0.0, 0))) is None
    for step in (1, 2, 3):
        meta = ckpt.RunMetadata(step, {"next_index": step}, prompts_per_step=4, seed=7,
                                config='{"a": 1}')  # fmt: skip
        ckpt.save(manager, _state(float(step), step), meta)
    manager.wait_until_finished()
    assert sorted(manager.all_steps()) == [2, 3]  # keep-last-N
    state, saved = ckpt.restore(manager, _state(0.0, 0), _shardings(_state(0.0, 0)))
    np.testing.assert_array_equal(state.params["w"], 3.0)
    assert int(state.updates) == 3
    assert saved["step"] == 3 and saved["data_position"] == 12
    assert saved["data_state"] == {"next_index": 3} and saved["rollout_seed_base"] == 7_000_021
    assert ckpt.data_state_of(saved) == {"next_index": 3}
    assert ckpt.data_state_of({"step": 5}) == {"next_index": 5}  # a checkpoint without one


def test_saving_the_latest_step_again_is_a_no_op(tmp_path):
    manager = ckpt.checkpoint_manager(tmp_path, keep=3)
    meta = ckpt.RunMetadata(1, {"next_index": 1}, 2, 0)
    ckpt.save(manager, _state(1.0, 1), meta)
    manager.wait_until_finished()
    ckpt.save(manager, _state(9.0, 1), meta, force=True)
    manager.wait_until_finished()
    state, _ = ckpt.restore(manager, _state(0.0, 0), _shardings(_state(0.0, 0)))
    np.testing.assert_array_equal(state.params["w"], 1.0)


def test_a_resume_that_changes_the_data_order_is_refused(tmp_path):
    saved = ckpt.RunMetadata(4, {"next_index": 4}, prompts_per_step=2, seed=0).to_json()
    ckpt.check_resumable(saved, ckpt.RunMetadata(4, {}, 2, 0), tmp_path)
    with pytest.raises(CoreaError, match="train.seed=0, this run has 5"):
        ckpt.check_resumable(saved, ckpt.RunMetadata(4, {}, 2, 5), tmp_path)
    with pytest.raises(CoreaError, match="train.prompts_per_step=2, this run has 3"):
        ckpt.check_resumable(saved, ckpt.RunMetadata(4, {}, 3, 0), tmp_path)


def test_metrics_of_steps_after_the_checkpoint_are_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 0.1}) + "\n" for s in range(1, 6)))
    ckpt.trim_metrics(path, 3)
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3]
    ckpt.trim_metrics(tmp_path / "absent.jsonl", 3)  # nothing to trim

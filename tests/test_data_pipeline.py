"""The training data order: per-epoch permutations cut into batches, state resumes exactly."""

import json

import numpy as np
import pytest

from corea_jax.data import DataError, epoch_order, index_batches


def _reference_indices(n, batch, step, seed):
    """The trainer's order before it read through grain, written out longhand."""
    flat = np.arange(step * batch, (step + 1) * batch)
    return np.array([epoch_order(n, seed, i // n)[i % n] for i in flat])


@pytest.mark.parametrize("n, batch, seed", [(8, 2, 0), (50, 8, 3), (7, 3, 1), (5, 16, 2)])
def test_batches_follow_the_per_epoch_permutations(n, batch, seed):
    batches = index_batches(n, batch_size=batch, seed=seed, num_batches=12)
    got = list(batches.to_iter_dataset())
    assert len(got) == 12
    for step, b in enumerate(got):
        np.testing.assert_array_equal(b, _reference_indices(n, batch, step, seed))
        np.testing.assert_array_equal(batches[step], b)  # random access agrees


def test_each_epoch_is_a_full_pass_and_a_new_permutation():
    flat = np.concatenate(list(index_batches(50, batch_size=10, seed=1, num_batches=10)))
    epoch1, epoch2 = flat[:50], flat[50:]
    assert sorted(epoch1) == sorted(epoch2) == list(range(50))
    assert not np.array_equal(epoch1, epoch2)
    other = np.concatenate(list(index_batches(50, batch_size=10, seed=2, num_batches=10)))
    assert not np.array_equal(flat, other)


def test_order_does_not_depend_on_the_number_of_batches():
    short = list(index_batches(9, batch_size=4, seed=0, num_batches=3))
    long = list(index_batches(9, batch_size=4, seed=0, num_batches=7))
    np.testing.assert_array_equal(np.stack(short), np.stack(long[:3]))


def test_iterator_state_is_json_and_resumes_exactly():
    batches = index_batches(50, batch_size=4, seed=3, num_batches=40).to_iter_dataset()
    it = iter(batches)
    for _ in range(20):  # past the end of the first epoch
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [next(it).tolist() for _ in range(5)]
    resumed = iter(batches)
    resumed.set_state(state)
    assert [next(resumed).tolist() for _ in range(5)] == expected


def test_bad_arguments_are_data_errors():
    with pytest.raises(DataError, match="batch_size"):
        index_batches(10, batch_size=0, seed=0, num_batches=1)
    with pytest.raises(DataError, match="source is empty"):
        index_batches(0, batch_size=4, seed=0, num_batches=1)

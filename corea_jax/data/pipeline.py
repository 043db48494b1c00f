"""The training data order, as a grain dataset of index batches with resumable iterator state.

    batches = index_batches(len(records), batch_size=8, seed=0, num_batches=100)
    it = iter(batches)                # a grain iterator
    first = next(it)                  # [8] int64 indices into `records`
    state = it.get_state()            # {"next_index": 1}: saved with the checkpoint
    ...
    it = iter(batches); it.set_state(state)   # continues exactly where `state` was taken
    batches[k]                        # batch k, by random access (the same as the k-th next)

The order: the batches cut the concatenation of per-epoch permutations, epoch e being
`np.random.default_rng([seed, e]).permutation(n)`, into consecutive slices of `batch_size`;
batch k is positions k*B .. k*B + B - 1 of it. A batch may straddle two epochs, every epoch is a
full pass before the next begins, and the order never depends on how many batches are asked for
(a run extended from 100 to 200 steps sees the same first 100 batches). [open: the paper does
not describe its data order.]

Batches hold indices, not records: the source (a tuple from `read_dataset` / `make_split`, or
a `RecordSource` over a prepared TFDS split) is indexed by the caller, and text stays on the
host until the prompt is rendered and tokenised (arrays in the core, strings at the edge).

No per-host shard: the trainer's rollout is one SPMD program over the *global* batch, whose
host inputs must be the same on every process (`corea_jax.parallel.sharding.put_global`), so
every host reads the whole batch; only the devices' slices of the arrays differ.
"""

from __future__ import annotations

import functools

import grain
import numpy as np

from corea_jax.data.records import DataError


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """[n] the permutation of epoch `epoch`."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class _PositionToIndex:
    """Flat position p -> epoch_order(n, seed, p // n)[p % n] (one epoch's order cached)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._order = functools.lru_cache(maxsize=2)(lambda e: epoch_order(n, seed, e))

    def __call__(self, position) -> int:
        epoch, i = divmod(int(position), self.n)
        return int(self._order(epoch)[i])


def index_batches(n: int, *, batch_size: int, seed: int, num_batches: int) -> grain.MapDataset:
    """`num_batches` batches of `batch_size` indices in [0, n), in the order described above."""
    if n < 1:
        raise DataError("index_batches: the record source is empty")
    if batch_size < 1 or num_batches < 0:
        raise DataError(f"batch_size ({batch_size}) must be positive, num_batches >= 0")
    positions = grain.MapDataset.range(num_batches * batch_size)
    return positions.map(_PositionToIndex(n, seed)).batch(batch_size)

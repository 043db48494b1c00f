"""Shuffled batches of records with grain, resumable from a saved iterator state.

    batches = record_batches(records, batch_size=8, seed=0)     # a grain.IterDataset
    it = iter(batches)
    first = next(it)                  # list[Record] of length 8
    state = it.get_state()            # a small JSON-serialisable dict; save it with a checkpoint
    ...
    it = iter(batches); it.set_state(state)   # continues exactly where `state` was taken

`records` is any random-access source: a tuple from `read_dataset` / `make_split`, or a
`RecordSource` over a prepared TFDS split. Batches are plain lists of records, not arrays: text
stays on the host until the prompt is rendered and tokenised (arrays in the core, strings at the
edge). The iterator can also be checkpointed with orbax through `grain.checkpoint`.

Defaults [open: the paper does not describe its data order]: shuffled with a fresh permutation
each epoch (every epoch is a full pass before the next begins), the last partial batch of the
last epoch kept (`drop_remainder=False`), and one epoch (`num_epochs=None` repeats forever).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grain

from corea_jax.data.records import DataError


def record_batches(
    records: Sequence[Any],
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = 1,
    drop_remainder: bool = False,
    shard_index: int = 0,
    shard_count: int = 1,
    transform: Callable[[Any], Any] | None = None,
) -> grain.IterDataset:
    """Batches of `batch_size` items of `records` (lists), shuffled by `seed`.

    Args:
      records: a random-access source (len and integer indexing).
      batch_size: items per batch.
      seed: shuffle seed; the same seed gives the same order.
      shuffle: False keeps source order.
      num_epochs: passes over the data; None repeats forever.
      drop_remainder: drop a final batch shorter than `batch_size`.
      shard_index / shard_count: this host's slice of the data (records
        shard_index, shard_index + shard_count, ...), taken before shuffling, so hosts never
        share a record.
      transform: applied to each item before batching (e.g. rendering and tokenising prompts).
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be positive, got {batch_size}")
    if not 0 <= shard_index < shard_count:
        raise DataError(f"need 0 <= shard_index < shard_count, got {shard_index}, {shard_count}")
    if num_epochs is not None and num_epochs < 1:
        raise DataError(f"num_epochs must be positive or None, got {num_epochs}")
    if len(records) == 0:
        raise DataError("record_batches: the record source is empty")
    dataset = grain.MapDataset.source(records)
    if shard_count > 1:
        dataset = dataset[shard_index::shard_count]
    if shuffle:  # shuffle before repeat: grain then draws a fresh permutation for every epoch
        dataset = dataset.shuffle(seed=seed)
    dataset = dataset.repeat(num_epochs)
    if transform is not None:
        dataset = dataset.map(transform)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, batch_fn=list)
    return dataset.to_iter_dataset()

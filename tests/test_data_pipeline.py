"""grain batching: epochs cover every record once, seeds fix the order, state resumes exactly."""

import json

import pytest

from corea_jax.data import DataError, SyntheticTask, make_split, record_batches

RECORDS = make_split(SyntheticTask(), "train", 50)


def ids(batch):
    return [r.id for r in batch]


def test_one_epoch_covers_every_record_once_with_a_short_last_batch():
    batches = list(record_batches(RECORDS, batch_size=8, seed=0))
    assert [len(b) for b in batches] == [8] * 6 + [2]
    flat = [i for b in batches for i in ids(b)]
    assert sorted(flat) == sorted(r.id for r in RECORDS)
    assert flat != [r.id for r in RECORDS]  # shuffled
    dropped = list(record_batches(RECORDS, batch_size=8, seed=0, drop_remainder=True))
    assert [len(b) for b in dropped] == [8] * 6


def test_seed_fixes_the_order_and_each_epoch_is_a_new_permutation():
    first = [ids(b) for b in record_batches(RECORDS, batch_size=10, seed=1, num_epochs=2)]
    again = [ids(b) for b in record_batches(RECORDS, batch_size=10, seed=1, num_epochs=2)]
    other = [ids(b) for b in record_batches(RECORDS, batch_size=10, seed=2, num_epochs=2)]
    assert first == again and first != other
    epoch1, epoch2 = sum(first[:5], []), sum(first[5:], [])
    assert sorted(epoch1) == sorted(epoch2) and epoch1 != epoch2
    in_order = sum(
        (ids(b) for b in record_batches(RECORDS, batch_size=10, seed=0, shuffle=False)), []
    )
    assert in_order == [r.id for r in RECORDS]


def test_iterator_state_is_json_and_resumes_exactly():
    batches = record_batches(RECORDS, batch_size=4, seed=3, num_epochs=None)
    it = iter(batches)
    for _ in range(20):  # past the end of the first epoch
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [ids(next(it)) for _ in range(5)]
    resumed = iter(batches)
    resumed.set_state(state)
    assert [ids(next(resumed)) for _ in range(5)] == expected


def test_shards_are_disjoint_and_cover_the_data():
    shards = [
        {
            i
            for b in record_batches(RECORDS, batch_size=5, seed=0, shard_index=k, shard_count=3)
            for i in ids(b)
        }
        for k in range(3)
    ]
    assert not (shards[0] & shards[1] or shards[0] & shards[2] or shards[1] & shards[2])
    assert set().union(*shards) == {r.id for r in RECORDS}


def test_transform_is_applied_per_item():
    batches = record_batches(RECORDS, batch_size=7, seed=0, transform=lambda r: len(r.question))
    assert sorted(x for b in batches for x in b) == sorted(len(r.question) for r in RECORDS)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size must be positive"),
        ({"shard_index": 2, "shard_count": 2}, "shard_index < shard_count"),
        ({"num_epochs": 0}, "num_epochs must be positive"),
    ],
)
def test_bad_arguments_are_data_errors(kwargs, message):
    with pytest.raises(DataError, match=message):
        record_batches(RECORDS, **{"batch_size": 4, "seed": 0, **kwargs})
    with pytest.raises(DataError, match="source is empty"):
        record_batches([], batch_size=4, seed=0)

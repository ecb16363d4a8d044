"""The producer's partitioner: Kafka's murmur2 placement, with the hashes remembered."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from cadenza_events.kafka import KeyHashCache

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("count", [1, 3, 6, 7])
def test_every_key_lands_where_kafkas_default_partitioner_puts_it(count: int) -> None:
    partitions = list(range(count))
    cache, default = KeyHashCache(size=100), DefaultPartitioner()
    keys = [f"run-{i}".encode() for i in range(500)]
    for _ in range(2):  # the second round answers from the cache (and after it started over)
        assert [cache(k, partitions, partitions) for k in keys] == [
            default(k, partitions, partitions) for k in keys
        ]


def test_a_partition_count_change_moves_keys_as_kafka_would() -> None:
    cache, default = KeyHashCache(), DefaultPartitioner()
    key = b"run-42"
    cache(key, [0, 1, 2], [0, 1, 2])
    assert cache(key, list(range(12)), list(range(12))) == default(
        key, list(range(12)), list(range(12))
    )


def test_no_key_picks_an_available_partition() -> None:
    cache = KeyHashCache()
    assert {cache(None, [0, 1, 2], [2]) for _ in range(20)} == {2}

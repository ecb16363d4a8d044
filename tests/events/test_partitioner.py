"""The producer's partitioner: Kafka's murmur2 placement, with the hashes remembered."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from cadenza_events.kafka import KeyHashCache, murmur2

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


# The Java client's own vectors (kafka's UtilsTest.testMurmur2), as signed 32-bit values.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "signed"), JAVA_MURMUR2.items())
def test_murmur2_matches_the_java_clients_vectors(key: bytes, signed: int) -> None:
    assert murmur2(key) == signed & 0xFFFFFFFF


def test_murmur2_matches_aiokafkas_for_every_length_and_byte() -> None:
    rng = random.Random(7)
    keys = [rng.randbytes(n) for n in range(0, 70) for _ in range(20)]
    keys += [bytes([b]) * n for b in (0, 0x7F, 0x80, 0xFF) for n in range(1, 9)]
    keys += [f"{rng.getrandbits(128):032x}.process-{i}".encode() for i in range(200)]
    assert [murmur2(k) for k in keys] == [aiokafka_murmur2(k) for k in keys]

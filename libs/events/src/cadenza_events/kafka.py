"""The aiokafka adapter: the only module that imports aiokafka."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from . import metrics
from .broadcast import Listener
from .bus import BatchHandler, ConsumerOptions, Decoder, Handler, RawRecord
from .envelope import Envelope, Message, encode
from .errors import Unavailable
from .labelled import labelled
from .offsets import TopicPartition as TP
from .runner import ConsumerRunner, RebalanceListener, one_by_one
from .settings import BusSettings
from .topics import Topic, TopicRegistry
from .tracing import inject

log = logging.getLogger("cadenza.events.kafka")


# Services may start before the broker is ready (or while it restarts): keep trying a while.
def _connect_retry() -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception_type((KafkaConnectionError, KafkaError, OSError)),
        stop=stop_after_delay(60),
        wait=wait_exponential(multiplier=0.2, max=3),
        reraise=True,
    )


FETCH_BATCH_BYTES = 16 * 1024
"""What a consumer with ``fetch_wait_ms`` asks the broker to gather before answering."""


async def _fetch(consumer: AIOKafkaConsumer, max_records: int, timeout_s: float) -> list[Message]:
    """One ``getmany``'s records as the bus's messages."""
    batches = await consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
    return [
        Message(
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            key=r.key,
            value=r.value or b"",
            headers=tuple(r.headers or ()),
            timestamp_ms=r.timestamp,
        )
        for records in batches.values()
        for r in records
    ]


def _hold_idle_fetches(consumer: AIOKafkaConsumer, group: str, idle_ms: int, busy_ms: int) -> None:
    """Let the broker hold a fetch up to ``idle_ms`` while nothing fetched waits to be
    handled, and ``busy_ms`` otherwise.

    Why it is safe: the client sends no fetch to a broker while one is in flight to it, and
    leaves out of a fetch the partitions whose fetched records are not consumed yet, or
    that are paused or being reset (those would wait for the in-flight fetch to come back:
    the stall ``BusSettings.fetch_max_wait_ms`` is short for). When none is in that state
    the fetch names every assigned partition, and a record on any of them answers it at
    once (``fetch_min_bytes`` 1): a long hold then costs no latency, only fewer idle
    round trips. The client has no option for it, so this wraps the method that builds each
    round's requests (aiokafka 0.14, pinned in uv.lock; tests/events/test_kafka_fetch_waits.py
    fails if a version changes it)."""
    fetcher = getattr(consumer, "_fetcher", None)
    plan = getattr(fetcher, "_get_actions_per_node", None)
    if fetcher is None or plan is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
        log.warning("aiokafka's fetcher changed: idle fetches are not held longer")
        return
    idle = metrics.FETCHES.labels(group, "idle")
    busy = metrics.FETCHES.labels(group, "busy")

    def actions(assignment: Any) -> Any:
        quiet = not fetcher._records and all(
            (state := assignment.state_value(tp)).has_valid_position and not state.paused
            for tp in assignment.tps
        )
        fetcher._fetch_max_wait_ms = idle_ms if quiet else busy_ms
        planned = plan(assignment)
        (idle if quiet else busy).inc(len(planned[0]))  # the fetch requests of this round
        return planned

    fetcher._get_actions_per_node = actions


class _Listener(ConsumerRebalanceListener):
    def __init__(self, listener: RebalanceListener) -> None:
        self._listener = listener

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._listener.on_revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._listener.on_assigned({(tp.topic, tp.partition) for tp in assigned})


class KafkaConsumerTransport:
    def __init__(
        self,
        settings: BusSettings,
        topics: list[str],
        group: str,
        *,
        fetch_wait_ms: int = 0,
        co_partitioned: bool = False,
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._group = group
        self._fetch_wait_ms = fetch_wait_ms
        # ConsumerOptions.co_partitioned. Round-robin stays listed second: a group chooses
        # the first strategy every member offers, so during a rolling upgrade the members
        # that offer only round-robin and those that prefer range still form one group.
        self._assignors = (
            (RangePartitionAssignor, RoundRobinPartitionAssignor)
            if co_partitioned
            else (RoundRobinPartitionAssignor,)
        )
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self, listener: RebalanceListener) -> None:
        s = self._settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=s.client_id,
            group_id=self._group,
            enable_auto_commit=False,  # commit only after the handler's effects are durable
            auto_offset_reset="earliest",
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            rebalance_timeout_ms=max(30_000, s.session_timeout_ms),
            max_poll_interval_ms=900_000,
            partition_assignment_strategy=self._assignors,
            # See ConsumerOptions.fetch_wait_ms; without it (the dispatch path), answered as
            # soon as one record is there, and held at most BusSettings.fetch_max_wait_ms.
            fetch_min_bytes=FETCH_BATCH_BYTES if self._fetch_wait_ms else 1,
            fetch_max_wait_ms=self._fetch_wait_ms or s.fetch_max_wait_ms,
        )
        consumer.subscribe(topics=self._topics, listener=_Listener(listener))
        async for attempt in _connect_retry():
            with attempt:
                await consumer.start()
        if not self._fetch_wait_ms:  # a gathering consumer keeps its own, fixed, wait
            _hold_idle_fetches(consumer, self._group, s.idle_fetch_wait_ms, s.fetch_max_wait_ms)
        self._consumer = consumer

    async def fetch(self, max_records: int, timeout_s: float) -> list[Message]:
        assert self._consumer is not None
        return await _fetch(self._consumer, max_records, timeout_s)

    async def commit(self, offsets: dict[TP, int]) -> None:
        assert self._consumer is not None
        await self._consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def partition_for(self, topic: str, key: bytes) -> int | None:
        partitions = self._consumer.partitions_for_topic(topic) if self._consumer else None
        if not partitions:
            return None
        return sorted(partitions)[key_hash(key) % len(partitions)]

    def end_offsets(self) -> dict[TP, int]:
        if self._consumer is None:
            return {}
        out: dict[TP, int] = {}
        for tp in self._consumer.assignment():
            hw = self._consumer.highwater(tp)
            if hw is not None:
                out[(tp.topic, tp.partition)] = hw
        return out


class KafkaBroadcastTransport:
    """A ``Listener``'s records on Kafka: no group; every partition of ``names`` assigned
    and sought to its end at start. Idle fetches are held up to Kafka's 500 ms (a record
    still comes back at once): the listener has its own connection, so its long poll
    holds up nothing else."""

    def __init__(self, settings: BusSettings, names: list[str]) -> None:
        self._settings = settings
        self._names = names
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        s = self._settings
        # Subscribed without a group, the client assigns itself every partition.
        consumer = AIOKafkaConsumer(
            *self._names,
            bootstrap_servers=s.bootstrap_servers,
            client_id=s.client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        async for attempt in _connect_retry():
            with attempt:
                await consumer.start()
        try:
            # start() waited for the topics' metadata and assigned every partition. The ends
            # as of now, awaited: a record published once start() returns is heard.
            partitions = consumer.assignment()
            if not partitions:
                raise Unavailable(f"Kafka: no partitions of {self._names}", code="bus_unavailable")
            await consumer.seek_to_end(*partitions)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def fetch(self, max_records: int, timeout_s: float) -> list[Message]:
        assert self._consumer is not None
        return await _fetch(self._consumer, max_records, timeout_s)

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()


class KeyHashCache:
    """Kafka's default partitioner (murmur2 of the key, as the Java client and every other
    client hash it, so a run's events land on the same partition whoever writes them) with
    the hashes remembered: murmur2 in Python costs microseconds, and the events keyed by
    run (each task's result, the run's timeline records) hash the same key again and again.
    ``task.ready`` is keyed by task: those keys are hashed once either way (``murmur2``).

    At most ``size`` keys are kept; past that the cache starts over (a run's key that is
    still busy is back within moments)."""

    def __init__(self, size: int = 50_000) -> None:
        self._size = size
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return DefaultPartitioner()(key, all_partitions, available)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._size:
                self._hashes.clear()
            hashed = self._hashes[key] = key_hash(key)
        return all_partitions[hashed % len(all_partitions)]


def key_hash(key: bytes) -> int:
    """Kafka's hash of a record key: the partition is this modulo the partition count."""
    return murmur2(key) & 0x7FFFFFFF


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``, seed 0x9747b28c),
    as an unsigned 32-bit value: what ``aiokafka.partitioner.murmur2`` returns, in half its
    time. Its words are read with one ``struct`` call rather than byte by byte, and every
    product is masked once: a plan of 5,000 tasks hashes 5,000 ``task.ready`` keys, ~7 µs
    each the other way. tests/events/test_partitioner.py checks it against aiokafka's and
    against the Java client's own test vectors."""
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    if words:
        for k in struct.unpack_from(f"<{words}I", data):
            k = (k * _M) & _MASK
            k = ((k ^ (k >> 24)) * _M) & _MASK
            h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra:
        tail = length - extra
        if extra == 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


SENDER_TURN_EVERY = 64
"""Records appended by ``publish_raw_many`` between two turns of the producer's sender. A
send only appends to a batch; the sender task ships the batches when the event loop runs
it. Without a turn, a plan's thousands of ``task.ready`` (a fan-out of 5,000: ~6 MB) were
all appended before the first left, and the workers waited: with one every 64, a fan-out of
5,000's first task started 388 ms after the plan began, not 459 (medians of 5 alternated
pairs, docs/benchmarks.md). The sender still sends one request per broker at a time, so
the turns do not make more requests."""


class KafkaPublisher:
    def __init__(self, settings: BusSettings, registry: TopicRegistry) -> None:
        self._settings = settings
        self._registry = registry
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.bootstrap_servers,
            client_id=self._settings.client_id,
            acks="all",
            enable_idempotence=True,  # broker dedupes producer retries: no duplicates from us
            linger_ms=self._settings.linger_ms,
            max_batch_size=self._settings.producer_batch_bytes,
            partitioner=KeyHashCache(),
        )
        async for attempt in _connect_retry():
            with attempt:
                await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def ping(self) -> None:
        """A metadata round trip through the producer's connection."""
        if self._producer is None:
            raise RuntimeError("the Kafka producer is not started")
        await self._producer.client.fetch_all_metadata()

    def _encode(
        self, topic: Topic, env: Envelope[Any]
    ) -> tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]:
        env = inject(env)
        key, value, headers = encode(env, self._registry.key_for(topic, env))
        return self._registry.name(topic), key, value, headers

    async def publish(self, topic: Topic, env: Envelope[Any]) -> None:
        await self.publish_raw(*self._encode(topic, env))

    async def publish_many(self, items: Sequence[tuple[Topic, Envelope[Any]]]) -> None:
        await self.publish_raw_many([self._encode(topic, env) for topic, env in items])

    async def publish_raw_many(
        self, items: Sequence[RawRecord], *, appended: Callable[[], None] | None = None
    ) -> None:
        """Send every record, then wait for all their acknowledgements. Every
        ``SENDER_TURN_EVERY`` records the producer's sender gets a turn of the event loop, so
        the batches built so far leave while the rest are appended. ``appended`` is called
        between the two: the records are in the producer's queue, in order."""
        assert self._producer is not None, "publisher not started"
        try:
            futures = []
            for n, (name, key, value, headers) in enumerate(items, 1):
                futures.append(
                    await self._producer.send(name, value, key=key, headers=list(headers))
                )
                if n % SENDER_TURN_EVERY == 0:
                    await asyncio.sleep(0)
            if appended is not None:
                appended()
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise Unavailable(
                f"Kafka: {type(exc).__name__}: {exc}", code="bus_unavailable"
            ) from exc
        # Counted once per topic, after the sends: a plan publishes thousands at once.
        for name, count in Counter(item[0] for item in items).items():
            labelled(metrics.PUBLISHED, name).inc(count)

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        assert self._producer is not None, "publisher not started"
        try:
            await self._producer.send_and_wait(topic, value, key=key, headers=list(headers))
        except KafkaError as exc:
            raise Unavailable(
                f"Kafka: {type(exc).__name__}: {exc}", code="bus_unavailable"
            ) from exc
        labelled(metrics.PUBLISHED, topic).inc()


class KafkaBus:
    """`Bus` on a real Apache Kafka cluster."""

    def __init__(self, settings: BusSettings | None = None) -> None:
        self.settings = settings or BusSettings()
        self.registry = TopicRegistry(self.settings.topic_prefix, self.settings.partitions)
        self.publisher = KafkaPublisher(self.settings, self.registry)

    async def start(self) -> None:
        await self.ensure_topics()
        await self.publisher.start()

    async def stop(self) -> None:
        await self.publisher.stop()

    async def ping(self) -> None:
        await self.publisher.ping()

    async def ensure_topics(self) -> None:
        """Create Cadenza's topics with explicit partition counts (idempotent)."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.bootstrap_servers, client_id=self.settings.client_id
        )
        async for attempt in _connect_retry():
            with attempt:
                await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(
                    name=self.registry.name(t),
                    num_partitions=self.registry.partitions_for(t),
                    replication_factor=self.settings.replication_factor,
                )
                for t in self.registry.all()
                if self.registry.name(t) not in existing
            ]
            if wanted:
                with contextlib.suppress(TopicAlreadyExistsError):  # another service won the race
                    await admin.create_topics(wanted)
                await self._wait_for_metadata(admin, {t.name for t in wanted})
        finally:
            await admin.close()

    async def delete_topics(self) -> None:
        """Delete this bus's topics (test clean-up; never called by services)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.bootstrap_servers)
        await admin.start()
        try:
            names = [self.registry.name(t) for t in self.registry.all()]
            existing = set(await admin.list_topics())
            if doomed := [n for n in names if n in existing]:
                await admin.delete_topics(doomed)
        finally:
            await admin.close()

    @staticmethod
    async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: set[str]) -> None:
        for _ in range(100):
            if names <= set(await admin.list_topics()):
                return
            await asyncio.sleep(0.1)

    def consumer(
        self,
        topics: Sequence[Topic],
        group: str,
        handler: Handler,
        options: ConsumerOptions | None = None,
        *,
        batch_handler: BatchHandler | None = None,
    ) -> ConsumerRunner:
        group = self.registry.group(group)
        options = options or ConsumerOptions()
        transport = KafkaConsumerTransport(
            self.settings,
            [self.registry.name(t) for t in topics],
            group,
            fetch_wait_ms=options.fetch_wait_ms,
            co_partitioned=options.co_partitioned,
        )
        return ConsumerRunner(
            transport,
            group=group,
            handler=handler,
            registry=self.registry,
            publisher=self.publisher,
            options=options,
            commit_interval_s=self.settings.commit_interval_s,
            batch_handler=batch_handler,
        )

    def topic_consumer(
        self,
        names: Sequence[str],
        group: str,
        handler: Handler,
        decoder: Decoder,
        options: ConsumerOptions | None = None,
    ) -> ConsumerRunner:
        group = self.registry.group(group)
        return ConsumerRunner(
            KafkaConsumerTransport(self.settings, list(names), group),
            group=group,
            handler=handler,
            registry=self.registry,
            publisher=self.publisher,
            options=options or ConsumerOptions(),
            commit_interval_s=self.settings.commit_interval_s,
            decoder=decoder,
        )

    def batch_consumer(
        self,
        topics: Sequence[Topic],
        group: str,
        handler: BatchHandler,
        options: ConsumerOptions | None = None,
    ) -> ConsumerRunner:
        return self.consumer(topics, group, one_by_one(handler), options, batch_handler=handler)

    def listener(self, topics: Sequence[Topic], handler: Handler, name: str) -> Listener:
        transport = KafkaBroadcastTransport(self.settings, [self.registry.name(t) for t in topics])
        return Listener(transport, handler, name)

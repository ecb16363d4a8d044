"""The in-process bus: Kafka's semantics (partitions, consumer groups, committed offsets,
redelivery of uncommitted messages, eager rebalances) without a broker.

For `cadenza dev` and unit tests only; it passes the same conformance suite as Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import metrics
from .broadcast import Listener
from .bus import BatchHandler, ConsumerOptions, Decoder, Handler, RawRecord
from .envelope import Envelope, Message, encode
from .offsets import TopicPartition
from .runner import ConsumerRunner, RebalanceListener, one_by_one
from .settings import BusSettings
from .topics import Topic, TopicRegistry
from .tracing import inject


class CommitFailedError(Exception):
    """The committing member no longer owns the partition (like Kafka's CommitFailedError)."""


class UnknownTopicError(Exception):
    pass


@dataclass
class _Group:
    members: list[MemoryConsumerTransport] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class MemoryBroker:
    """Holds topics and groups; several buses (services) in one process share one broker."""

    def __init__(self) -> None:
        self.topics: dict[str, list[list[Message]]] = {}
        self.groups: dict[str, _Group] = {}
        self._changed = asyncio.Event()
        self._round_robin = itertools.count()

    def create_topic(self, name: str, partitions: int) -> None:
        self.topics.setdefault(name, [[] for _ in range(partitions)])

    def partition_of(self, topic: str, key: bytes) -> int:
        """Where a record of ``key`` goes in ``topic`` (its own hash: no other client writes
        to this bus)."""
        return zlib.crc32(key) % len(self.topics[topic])

    def append(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> Message:
        parts = self.topics.get(topic)
        if parts is None:
            raise UnknownTopicError(f"topic {topic!r} does not exist")
        index = (
            self.partition_of(topic, key)
            if key is not None
            else next(self._round_robin) % len(parts)
        )
        part = parts[index]
        msg = Message(
            topic=topic,
            partition=index,
            offset=len(part),
            key=key,
            value=value,
            headers=tuple(headers),
            timestamp_ms=int(time.time() * 1000),
        )
        part.append(msg)
        self._notify()
        return msg

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_change(self, timeout_s: float) -> None:
        event = self._changed
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()

    async def join(self, group: str, member: MemoryConsumerTransport) -> None:
        state = self.groups.setdefault(group, _Group())
        async with state.lock:
            await self._revoke_all(state)
            state.members.append(member)
            await self._assign(state)

    async def leave(self, group: str, member: MemoryConsumerTransport) -> None:
        state = self.groups[group]
        async with state.lock:
            await self._revoke_all(state)
            if member in state.members:
                state.members.remove(member)
            await self._assign(state)

    async def _revoke_all(self, state: _Group) -> None:
        # Eager protocol, as Kafka's default assignors: everyone gives up everything first.
        for member in state.members:
            revoked, member.assignment = member.assignment, set()
            if revoked and member.listener is not None:
                await member.listener.on_revoked(revoked)

    async def _assign(self, state: _Group) -> None:
        for member in state.members:
            member.assignment = set()
        for topic in sorted({t for m in state.members for t in m.topics}):
            subscribers = [m for m in state.members if topic in m.topics]
            for p in range(len(self.topics[topic])):
                owner = subscribers[p % len(subscribers)]
                owner.assignment.add((topic, p))
                owner.positions[(topic, p)] = state.committed.get((topic, p), 0)
        for member in state.members:
            if member.listener is not None:
                await member.listener.on_assigned(set(member.assignment))

    def commit(
        self, group: str, member: MemoryConsumerTransport, offsets: dict[TopicPartition, int]
    ) -> None:
        state = self.groups[group]
        lost = [tp for tp in offsets if tp not in member.assignment]
        if lost:
            raise CommitFailedError(f"partitions {lost} are not assigned to this member")
        state.committed.update(offsets)


class MemoryConsumerTransport:
    def __init__(self, broker: MemoryBroker, topics: list[str], group: str) -> None:
        self.broker = broker
        self.topics = topics
        self.group = group
        self.assignment: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.listener: RebalanceListener | None = None
        self._rotation = 0

    async def start(self, listener: RebalanceListener) -> None:
        for topic in self.topics:
            if topic not in self.broker.topics:
                raise UnknownTopicError(f"topic {topic!r} does not exist")
        self.listener = listener
        await self.broker.join(self.group, self)

    async def fetch(self, max_records: int, timeout_s: float) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        while True:
            out: list[Message] = []
            owned = sorted(self.assignment)
            self._rotation += 1
            for i in range(len(owned)):  # rotate so no partition starves under max_records
                tp = owned[(i + self._rotation) % len(owned)]
                part = self.broker.topics[tp[0]][tp[1]]
                pos = self.positions.get(tp, 0)
                take = part[pos : pos + (max_records - len(out))]
                out.extend(take)
                self.positions[tp] = pos + len(take)
                if len(out) >= max_records:
                    break
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            await self.broker.wait_for_change(remaining)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.broker.commit(self.group, self, offsets)

    async def close(self) -> None:
        await self.broker.leave(self.group, self)
        self.listener = None

    def end_offsets(self) -> dict[TopicPartition, int]:
        return {tp: len(self.broker.topics[tp[0]][tp[1]]) for tp in self.assignment}

    def partition_for(self, topic: str, key: bytes) -> int | None:
        return self.broker.partition_of(topic, key) if topic in self.broker.topics else None


class MemoryPublisher:
    def __init__(self, broker: MemoryBroker, registry: TopicRegistry) -> None:
        self._broker = broker
        self._registry = registry

    async def publish(self, topic: Topic, env: Envelope[Any]) -> None:
        env = inject(env)
        key, value, headers = encode(env, self._registry.key_for(topic, env))
        name = self._registry.name(topic)
        self._broker.append(name, key, value, headers)
        metrics.PUBLISHED.labels(name).inc()

    async def publish_many(self, items: Sequence[tuple[Topic, Envelope[Any]]]) -> None:
        for topic, env in items:
            await self.publish(topic, env)

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        self._broker.append(topic, key, value, headers)
        metrics.PUBLISHED.labels(topic).inc()

    async def publish_raw_many(
        self, items: Sequence[RawRecord], *, appended: Callable[[], None] | None = None
    ) -> None:
        for topic, key, value, headers in items:
            await self.publish_raw(topic, key, value, headers)
        if appended is not None:
            appended()


class MemoryBroadcastTransport:
    """A ``Listener``'s records in process: a consumer transport that joins no group but
    holds every partition of ``names``, each from its end at ``start()``."""

    def __init__(self, broker: MemoryBroker, names: list[str]) -> None:
        self._reader = MemoryConsumerTransport(broker, names, group="")

    async def start(self) -> None:
        reader = self._reader
        for name in reader.topics:
            parts = reader.broker.topics.get(name)
            if parts is None:
                raise UnknownTopicError(f"topic {name!r} does not exist")
            for p, part in enumerate(parts):
                reader.assignment.add((name, p))
                reader.positions[(name, p)] = len(part)

    async def fetch(self, max_records: int, timeout_s: float) -> list[Message]:
        return await self._reader.fetch(max_records, timeout_s)

    async def close(self) -> None:
        return None


class MemoryBus:
    """`Bus` over a `MemoryBroker` (pass a shared broker to connect several services)."""

    def __init__(
        self, settings: BusSettings | None = None, broker: MemoryBroker | None = None
    ) -> None:
        self.settings = settings or BusSettings(backend="memory")
        self.registry = TopicRegistry(self.settings.topic_prefix, self.settings.partitions)
        self.broker = broker or MemoryBroker()
        self.publisher = MemoryPublisher(self.broker, self.registry)

    async def start(self) -> None:
        for topic in self.registry.all():
            self.broker.create_topic(self.registry.name(topic), self.registry.partitions_for(topic))

    async def stop(self) -> None:
        return None

    async def ping(self) -> None:
        return None  # in-process: always reachable

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
        transport = MemoryConsumerTransport(
            self.broker, [self.registry.name(t) for t in topics], group
        )
        return ConsumerRunner(
            transport,
            group=group,
            handler=handler,
            registry=self.registry,
            publisher=self.publisher,
            options=options or ConsumerOptions(),
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
        for name in names:  # the in-process broker has no auto-creation: upstream topics appear
            self.broker.create_topic(name, self.settings.partitions)
        return ConsumerRunner(
            MemoryConsumerTransport(self.broker, list(names), group),
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
        transport = MemoryBroadcastTransport(self.broker, [self.registry.name(t) for t in topics])
        return Listener(transport, handler, name)

"""The bus protocols every service codes against, and the knobs of a consumer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .envelope import Envelope, Message
from .topics import Topic, TopicRegistry

if TYPE_CHECKING:
    from .broadcast import Listener

Handler = Callable[[Envelope[Any]], Awaitable[None]]
BatchHandler = Callable[[Sequence[Envelope[Any]]], Awaitable[None]]
"""Handles what one fetch brought for ONE partition, in offset order, as one unit."""
Decoder = Callable[[Message], Envelope[Any]]
"""Turns a raw record into an envelope; raises DecodeError for a record it cannot read (the
runner dead-letters it). Cadenza's own topics use ``envelope.decode``; a consumer of
foreign topics (upstream CloudEvents, plain JSON) brings its own."""
OutagePredicate = Callable[[BaseException], bool]
"""Tells a backing store being away (database, Redis, object store) from a bad message."""
RawRecord = tuple[str, bytes | None, bytes, Sequence[tuple[str, bytes]]]
"""(physical topic, key, value, headers)"""


@dataclass(frozen=True)
class RetryPolicy:
    """How a consumer retries a failing handler before dead-lettering the message.

    Backoff is exponential with full jitter (tenacity). Errors with ``retryable=False``
    are dead-lettered at once.
    """

    max_attempts: int = 3
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0


BACKGROUND_FETCH_WAIT_MS = 500
"""``ConsumerOptions.fetch_wait_ms`` of a consumer off every latency path (Kafka's default
fetch wait): idle, it costs the broker and itself two fetches a second."""


@dataclass(frozen=True)
class ConsumerOptions:
    """Per-consumer tuning."""

    concurrency: int = 16
    """Messages handled at once; same-key messages still run one after another."""
    order_header: str | None = None
    """Run one after another the messages of a partition whose header of this name (e.g.
    ``ce_taskid``) has the same value, rather than those with the same key: for a topic
    whose key groups messages that need no order among themselves (a run's task.ready
    sent to one worker together). None: the key."""
    retry: RetryPolicy = RetryPolicy()
    shutdown_grace_s: float = 10.0
    """On stop (and on partition revocation): how long in-flight handlers may finish."""
    is_outage: OutagePredicate | None = None
    """Errors for which this returns true mean "a store is down", not "this message is bad":
    the handler is retried until the store is back (no dead-lettering, no commit past the
    message), so an outage pauses consumption and never discards healthy events."""
    outage_max_backoff_s: float = 5.0
    """Longest wait between two tries while a store is down."""
    fetch_wait_ms: int = 0
    """Kafka: let the broker hold a fetch up to this long for more records (16 KiB). 0 (the
    dispatch path) answers a fetch as soon as one record is there, and holds one with none
    at most ``BusSettings.fetch_max_wait_ms``; a consumer whose records
    may wait a little (the run-event log) makes far fewer fetches under load: each is a
    request, syscalls and parsing on both sides. ``BACKGROUND_FETCH_WAIT_MS`` for those
    whose records may wait half a second (dead letters, documents to ingest): idle, such a
    consumer asks twice a second instead of twenty times."""
    batches_in_flight: int | None = None
    """Batch consumers: how many partitions' batches of one topic are handled at once (None:
    one per partition). Either way a partition's batch that has not started yet takes the
    records of its partition fetched meanwhile, so a backlog becomes a few large batches,
    not many small ones. 1 hands each topic's batches over one at a time: a batch waits
    behind no other batch's awaits, and under load each carries more records (a handler
    with a fixed cost per batch, such as a transaction, pays it less often). Per topic, so
    one topic's backlog (results) never holds up another's first record (a new run)."""
    co_partitioned: bool = False
    """Every member of the group gets the same partition numbers of each of its topics
    (Kafka: the range assignor, which needs the topics to have as many partitions as each
    other, as Cadenza creates them). A consumer of two topics keyed alike — the
    orchestrator's ``plan.requested`` and ``task.result``, both keyed by run — then has
    all of a run's events in one process. Kafka's default for a group of aiokafka
    consumers, the round-robin assignor, deals the partitions of all topics out in turn:
    whether a partition number's two halves meet depends on the counts (3 partitions and 2
    members: never). The in-process bus always assigns this way."""
    on_revoked: Callable[[set[tuple[str, int]]], None] | None = None
    """Called with the ``(topic, partition)`` pairs a rebalance took from this consumer, once
    their in-flight work finished and was committed: what the handler keeps per partition
    (the orchestrator's runs held in memory) may no longer be its own."""
    on_assigned: Callable[[set[tuple[str, int]]], None] | None = None
    """Called with every ``(topic, partition)`` pair this consumer holds after a rebalance,
    before any of their records is handled: with ``on_revoked`` just before, what the
    handler kept for a partition assigned straight back is still its own, and what it kept
    for one that went is not (``Consumer.holds_key`` says which keys it holds now)."""


class Publisher(Protocol):
    async def publish(self, topic: Topic, env: Envelope[Any]) -> None:
        """Publish one event, keyed by the topic's key rule; returns once durable."""
        ...

    async def publish_many(self, items: Sequence[tuple[Topic, Envelope[Any]]]) -> None:
        """Publish several events, pipelined; returns once all are durable."""
        ...

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """Publish pre-encoded bytes to a physical topic (outbox relay, tests)."""
        ...

    async def publish_raw_many(
        self, items: Sequence[RawRecord], *, appended: Callable[[], None] | None = None
    ) -> None:
        """Publish pre-encoded records, pipelined; returns once all are durable.
        ``appended``: called once every record is handed to the client, before waiting for
        their acknowledgements (a caller that orders its sends may start the next then)."""
        ...


class Consumer(Protocol):
    group: str

    def holds_key(self, topic: Topic, key: str) -> bool | None:
        """Whether this member holds the partition that ``topic``'s records keyed ``key``
        land on (the bus's own partitioner, the topic's actual partition count); None while
        that is not known (the topic's metadata not fetched yet). A member mid-rebalance
        holds nothing."""
        ...

    async def start(self) -> None:
        """Join the group and start handling messages in the background."""
        ...

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop fetching, let in-flight handlers finish (up to grace), commit, leave.

        Handlers still running after the grace are cancelled; their messages stay
        uncommitted and will be redelivered to the group.
        """
        ...


class Bus(Protocol):
    @property
    def registry(self) -> TopicRegistry: ...

    @property
    def publisher(self) -> Publisher: ...

    async def start(self) -> None:
        """Create missing topics (explicit partition counts) and start the producer."""
        ...

    async def stop(self) -> None: ...

    async def ping(self) -> None:
        """A real round trip to the broker (readiness checks); raises when unreachable."""
        ...

    def consumer(
        self,
        topics: Sequence[Topic],
        group: str,
        handler: Handler,
        options: ConsumerOptions | None = None,
    ) -> Consumer: ...

    def topic_consumer(
        self,
        names: Sequence[str],
        group: str,
        handler: Handler,
        decoder: Decoder,
        options: ConsumerOptions | None = None,
    ) -> Consumer:
        """A consumer of topics that are not Cadenza's (physical ``names``, no prefix, e.g.
        an upstream system's ``payments``), reading records with ``decoder``. Undecodable
        records go to Cadenza's dead-letter topic like any poison message."""
        ...

    def batch_consumer(
        self,
        topics: Sequence[Topic],
        group: str,
        handler: BatchHandler,
        options: ConsumerOptions | None = None,
    ) -> Consumer:
        """Like ``consumer``, but ``handler`` gets each partition's fetched records at once
        (one retry, one span per batch; offsets committed in order after it returns). When
        a batch keeps failing, its envelopes are retried one by one so only a poison
        message is dead-lettered."""
        ...

    def listener(self, topics: Sequence[Topic], handler: Handler, name: str) -> Listener:
        """Every record published on ``topics`` after ``start()`` reaches ``handler`` in
        THIS process (no group: each listener hears everything; no commits, retries or
        dead letters): for control messages a slower durable path backs up
        (``cadenza_events.broadcast``)."""
        ...

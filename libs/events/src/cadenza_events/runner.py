"""The consumer runtime shared by every transport.

Decode → handler (retried with exponential backoff + jitter) → dead-letter on failure →
commit in offset order. Messages with the same key are handled one after another; other
keys run concurrently up to ``concurrency``. Nothing a transport returns can crash it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_never,
    wait_random_exponential,
)

from . import metrics
from .bus import BatchHandler, ConsumerOptions, Decoder, Handler, Publisher
from .envelope import Envelope, Message, decode
from .errors import CadenzaError, DecodeError, is_retryable
from .labelled import labelled
from .offsets import OffsetTracker, TopicPartition
from .payloads import DEFAULT_TENANT, DeadLetter
from .tasks import cancel_and_wait
from .topics import Topic, TopicRegistry
from .tracing import batch_span, consume_span

log = logging.getLogger("cadenza.events.consumer")


def _should_retry(exc: BaseException) -> bool:
    # tenacity sees BaseException too: a cancelled handler must stop, not be retried.
    return not isinstance(exc, asyncio.CancelledError) and is_retryable(exc)


def _not_cancelled(exc: BaseException) -> bool:
    return not isinstance(exc, asyncio.CancelledError)


def one_by_one(handler: BatchHandler) -> Handler:
    """A batch handler as a per-message handler (batches of one)."""

    async def one(env: Envelope[Any]) -> None:
        await handler([env])

    return one


class RebalanceListener(Protocol):
    async def on_revoked(self, partitions: set[TopicPartition]) -> None: ...
    async def on_assigned(self, partitions: set[TopicPartition]) -> None: ...


class ConsumerTransport(Protocol):
    """What a bus implementation provides to the runner: raw fetch and commit."""

    async def start(self, listener: RebalanceListener) -> None: ...
    async def fetch(self, max_records: int, timeout_s: float) -> list[Message]: ...
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...
    async def close(self) -> None: ...
    def end_offsets(self) -> dict[TopicPartition, int]: ...
    def partition_for(self, topic: str, key: bytes) -> int | None:
        """The partition records of ``key`` land on in ``topic`` (a physical name); None
        while the topic's partition count is not known."""
        ...


def fetch_backoff_s(failures: int) -> float:
    """The wait after ``failures`` failed fetches in a row (the broker away): 0.2 s,
    doubled each time, at most 5 s."""
    return min(0.1 * 2**failures, 5.0)


class ConsumerRunner:
    """Implements ``Consumer`` on top of any ``ConsumerTransport``."""

    def __init__(
        self,
        transport: ConsumerTransport,
        *,
        group: str,
        handler: Handler,
        registry: TopicRegistry,
        publisher: Publisher,
        options: ConsumerOptions,
        commit_interval_s: float,
        source: str = "/cadenza/consumer",
        batch_handler: BatchHandler | None = None,
        decoder: Decoder = decode,
    ) -> None:
        self.group = group
        self._decode = decoder
        self._transport = transport
        self._handler = handler
        self._registry = registry
        self._publisher = publisher
        self._options = options
        self._commit_interval_s = commit_interval_s
        self._source = source
        self._tracker = OffsetTracker()
        self._batch_handler = batch_handler
        self._inflight: dict[asyncio.Task[None], Message] = {}
        """Per-message mode: the task handling each message."""
        self._batches: dict[asyncio.Task[None], list[Message]] = {}
        """Batch mode: the task handling each partition's fetched batch."""
        self._tails: dict[tuple[TopicPartition, bytes | None], asyncio.Task[None]] = {}
        self._open: dict[TopicPartition, list[Message]] = {}
        """Batch mode: each partition's batch that has not started yet (it grows)."""
        self._batch_slots: dict[str, asyncio.Semaphore] = {}
        """Batch mode with ``batches_in_flight``: each topic's slots."""
        self._slot_freed = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._stopping = False
        self._fetch_task: asyncio.Task[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._dlq_topic = registry.name(Topic.DLQ)
        self.assignment: set[TopicPartition] = set()
        self._lag_series: set[TopicPartition] = set()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self._transport.start(self)
        self._fetch_task = asyncio.create_task(self._fetch_loop(), name=f"fetch:{self.group}")
        self._commit_task = asyncio.create_task(self._commit_loop(), name=f"commit:{self.group}")

    async def stop(self, grace_s: float | None = None) -> None:
        grace = self._options.shutdown_grace_s if grace_s is None else grace_s
        self._stopping = True
        for task in (self._fetch_task, self._commit_task):
            if task is not None:
                await cancel_and_wait(task)
        await self._drain(set(self._inflight) | set(self._batches), grace)
        await self._commit()
        with contextlib.suppress(Exception):
            await self._transport.close()
        metrics.INFLIGHT.labels(self.group).set(0)

    def holds_key(self, topic: Topic, key: str) -> bool | None:
        name = self._registry.name(topic)
        partition = self._transport.partition_for(name, key.encode())
        return None if partition is None else (name, partition) in self.assignment

    def committed(self) -> dict[TopicPartition, int]:
        """Positions this consumer has committed (for tests and diagnostics)."""
        return self._tracker.committed()

    # -- rebalance -------------------------------------------------------------------------
    async def on_revoked(self, partitions: set[TopicPartition]) -> None:
        """Finish (or abandon) work on partitions we lose, commit it, then forget them."""
        tasks = {t for t, m in self._inflight.items() if (m.topic, m.partition) in partitions}
        tasks |= {t for t, b in self._batches.items() if (b[0].topic, b[0].partition) in partitions}
        await self._drain(tasks, self._options.shutdown_grace_s)
        await self._commit(only=partitions)
        self._tracker.drop(partitions)
        self.assignment -= partitions
        if self._options.on_revoked is not None and partitions:
            self._options.on_revoked(partitions)
        for chain in [c for c in self._tails if c[0] in partitions]:
            del self._tails[chain]

    async def on_assigned(self, partitions: set[TopicPartition]) -> None:
        self.assignment = set(partitions)
        log.debug("group %s assigned %s", self.group, sorted(partitions))
        if self._options.on_assigned is not None:
            self._options.on_assigned(set(partitions))

    async def _drain(self, tasks: set[asyncio.Task[None]], grace: float) -> None:
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace) if grace > 0 else (set(), tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            metrics.MESSAGES.labels("*", self.group, "abandoned").inc(len(pending))

    # -- loops -----------------------------------------------------------------------------
    async def _fetch_loop(self) -> None:
        failures = 0
        while not self._stopping:
            free = self._options.concurrency - self._pending_records()
            if free <= 0:
                self._slot_freed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self._slot_freed.wait()
                continue
            try:
                records = await self._transport.fetch(free, 0.2)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception(
                    "group %s: fetch failed (%d in a row); backing off", self.group, failures
                )
                await asyncio.sleep(fetch_backoff_s(failures))
                continue
            if self._batch_handler is not None:
                by_partition: dict[TopicPartition, list[Message]] = {}
                for record in records:
                    by_partition.setdefault((record.topic, record.partition), []).append(record)
                for batch in by_partition.values():
                    self._schedule_batch(batch)
            else:
                for record in records:
                    self._schedule(record)

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self._commit_interval_s)
            await self._commit()
            self._update_lag()

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        async with self._commit_lock:
            offsets = self._tracker.committable(only)
            if not offsets:
                return
            try:
                await self._transport.commit(offsets)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. a rebalance raced us; the new owner redoes it
                log.warning("group %s: commit of %s failed: %s", self.group, offsets, exc)
                return
            self._tracker.mark_committed(offsets)

    def _update_lag(self) -> None:
        try:
            ends = self._transport.end_offsets()
        except Exception:  # lag is best effort
            return
        committed = self._tracker.committed()
        for (topic, partition), end in ends.items():
            lag = max(0, end - committed.get((topic, partition), end))
            metrics.LAG.labels(topic, str(partition), self.group).set(lag)
        # Partitions another member owns now: their series would go stale, drop them.
        for topic, partition in self._lag_series - set(ends):
            with contextlib.suppress(KeyError):
                metrics.LAG.remove(topic, str(partition), self.group)
        self._lag_series = set(ends)

    def _pending_records(self) -> int:
        return len(self._inflight) + sum(len(b) for b in self._batches.values())

    # -- per partition batch ---------------------------------------------------------------
    def _schedule_batch(self, records: list[Message]) -> None:
        tp = (records[0].topic, records[0].partition)
        for record in records:
            self._tracker.begin(tp, record.offset)
        waiting = self._open.get(tp)
        if waiting is not None:
            # The partition's next batch has not started: the records join it (same order,
            # one handler call and one transaction instead of one per fetch).
            waiting.extend(records)
            metrics.BATCHES_JOINED.labels(self.group).inc()
        else:
            batch = list(records)
            chain = (tp, None)  # one partition's batches run one after another: order is kept
            previous = self._tails.get(chain)
            task = asyncio.create_task(self._process_batch(batch, previous))
            self._open[tp] = batch
            self._batches[task] = batch
            self._tails[chain] = task
            task.add_done_callback(partial(self._on_batch_done, batch, chain))
        metrics.INFLIGHT.labels(self.group).set(self._pending_records())

    def _close(self, batch: list[Message]) -> None:
        """The batch takes no more records (it starts, or ended without starting)."""
        tp = (batch[0].topic, batch[0].partition)
        if self._open.get(tp) is batch:
            del self._open[tp]

    def _on_batch_done(
        self,
        batch: list[Message],
        chain: tuple[TopicPartition, bytes | None],
        task: asyncio.Task[None],
    ) -> None:
        self._batches.pop(task, None)
        self._close(batch)  # cancelled before it started (a revocation, a stop)
        if self._tails.get(chain) is task:
            del self._tails[chain]
        if not task.cancelled():
            for record in batch:
                self._tracker.finish((record.topic, record.partition), record.offset)
        self._slot_freed.set()

    async def _process_batch(
        self, batch: list[Message], previous: asyncio.Task[None] | None
    ) -> None:
        """Wait for the partition's previous batch (and, with ``batches_in_flight``, for a
        slot), then close the batch to newcomers and handle it."""
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        async with self._slot_of(batch[0].topic):
            self._close(batch)
            await self._handle_batch(batch)

    def _slot_of(self, topic: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """What a batch of ``topic`` holds while it is handled: one of the topic's
        ``batches_in_flight`` slots, or nothing when batches are not limited."""
        limit = self._options.batches_in_flight
        if limit is None:
            return contextlib.nullcontext()
        slots = self._batch_slots.get(topic)
        if slots is None:
            slots = self._batch_slots[topic] = asyncio.Semaphore(limit)
        return slots

    async def _handle_batch(self, batch: list[Message]) -> None:
        """Decode every record (dead-lettering the undecodable), then hand the rest to the
        batch handler as ONE call, retried as one. If it still fails (and not because a
        store is down), each envelope is retried alone, so only a poison message is
        dead-lettered and its neighbours are not."""
        assert self._batch_handler is not None
        handler = self._batch_handler
        started = time.perf_counter()
        decoded: list[tuple[Message, Envelope[Any]]] = []
        for record in batch:
            try:
                decoded.append((record, self._decode(record)))
            except DecodeError as exc:
                await self._dead_letter(record, exc, attempts=0)
        if not decoded:
            return
        topic = decoded[0][0].topic
        metrics.BATCH_SIZE.labels(self.group).observe(len(decoded))
        try:
            with batch_span(self.group, topic, decoded):
                await self._call_retrying(topic, lambda: handler([e for _, e in decoded]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(decoded) == 1:
                record, env = decoded[0]
                await self._failed(record, env, exc, self._options.retry.max_attempts)
            else:
                log.warning(
                    "group %s: a batch of %d from %s failed (%r); retrying one by one",
                    self.group,
                    len(decoded),
                    topic,
                    exc,
                )
                for record, env in decoded:
                    await self._process_one(record, env, partial(handler, [env]))
                return
        metrics.MESSAGES.labels(topic, self.group, "handled").inc(len(decoded))
        metrics.HANDLE_SECONDS.labels(topic, self.group).observe(time.perf_counter() - started)

    async def _call_retrying(
        self, topic: str, call: Callable[[], Awaitable[None]], tries: list[int] | None = None
    ) -> None:
        """Run ``call`` under the retry policy (outages retried until they end); raises the
        last error when it gives up. ``tries[0]`` counts the tries made."""
        tries = tries if tries is not None else [0]
        # The first try outside tenacity: the happy path (nearly every message) pays for no
        # retry machinery. A failure goes through the policy below as its try number 1.
        tries[0] += 1
        try:
            await call()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not _should_retry(exc) or (
                self._options.retry.max_attempts <= 1 and not self._is_outage(exc)
            ):
                raise
            first_failure = exc
        paused = False
        try:
            if self._is_outage(first_failure):
                paused = self._pause(topic, first_failure)
            await asyncio.sleep(self._backoff(1, first_failure))
            async for attempt in self._retrying():
                with attempt:
                    tries[0] += 1
                    if tries[0] > 1:
                        metrics.RETRIES.labels(topic, self.group).inc()
                    try:
                        await call()
                    except Exception as exc:
                        if self._is_outage(exc):
                            paused = self._pause(topic, exc, paused) or paused
                        raise
        finally:
            if paused:
                metrics.PAUSED.labels(self.group).dec()

    def _pause(self, topic: str, exc: BaseException, paused: bool = False) -> bool:
        """Count an outage try; the first one of a message logs and raises the gauge.
        Returns True when this call raised the gauge (the caller lowers it at the end)."""
        metrics.OUTAGE_RETRIES.labels(topic, self.group).inc()
        if paused:
            return False
        metrics.PAUSED.labels(self.group).inc()
        log.warning(
            "group %s: a backing store is down (%s: %s); %s waits for it",
            self.group,
            type(exc).__name__,
            exc,
            topic,
        )
        return True

    async def _process_one(
        self, record: Message, env: Envelope[Any], call: Callable[[], Awaitable[None]]
    ) -> None:
        started = time.perf_counter()
        tries = [0]
        outcome = "handled"
        try:
            with consume_span(env, record, self.group):
                await self._call_retrying(record.topic, call, tries)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = "dead_lettered"
            await self._failed(record, env, exc, max(tries[0], 1))
        labelled(metrics.MESSAGES, record.topic, self.group, outcome).inc()
        labelled(metrics.HANDLE_SECONDS, record.topic, self.group).observe(
            time.perf_counter() - started
        )

    async def _failed(
        self, record: Message, env: Envelope[Any], exc: Exception, attempts: int
    ) -> None:
        log.warning(
            "group %s: %s@%s/%s failed after %d attempt(s): %r",
            self.group,
            record.topic,
            record.partition,
            record.offset,
            attempts,
            exc,
        )
        await self._dead_letter(record, exc, attempts, env)

    # -- per message -----------------------------------------------------------------------
    def _schedule(self, record: Message) -> None:
        tp = (record.topic, record.partition)
        self._tracker.begin(tp, record.offset)
        order = self._order_of(record)
        chain = (tp, order) if order is not None else None
        previous = self._tails.get(chain) if chain is not None else None
        task = asyncio.create_task(self._process(record, previous))
        self._inflight[task] = record
        if chain is not None:
            self._tails[chain] = task
        task.add_done_callback(partial(self._on_done, record, chain))
        metrics.INFLIGHT.labels(self.group).set(len(self._inflight))

    def _order_of(self, record: Message) -> bytes | None:
        """What same-ordered messages share: the key, or ``ConsumerOptions.order_header``."""
        name = self._options.order_header
        if name is None:
            return record.key
        for header, value in record.headers:
            if header == name:
                return value
        return record.key

    def _on_done(
        self,
        record: Message,
        chain: tuple[TopicPartition, bytes] | None,
        task: asyncio.Task[None],
    ) -> None:
        self._inflight.pop(task, None)
        if chain is not None and self._tails.get(chain) is task:
            del self._tails[chain]
        if not task.cancelled():  # a cancelled message stays uncommitted: redelivered later
            self._tracker.finish((record.topic, record.partition), record.offset)
        self._slot_freed.set()

    async def _process(self, record: Message, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait({previous})  # same key: keep the partition's order
        try:
            env = self._decode(record)
        except DecodeError as exc:
            await self._dead_letter(record, exc, attempts=0)
            return
        handler = self._handler
        await self._process_one(record, env, lambda: handler(env))

    def _is_outage(self, exc: BaseException) -> bool:
        predicate = self._options.is_outage
        return predicate is not None and predicate(exc)

    def _backoff(self, tries: int, exc: BaseException | None) -> float:
        """Full-jitter exponential backoff after ``tries`` failed tries (capped longer while a
        store is down)."""
        policy = self._options.retry
        outage = exc is not None and self._is_outage(exc)
        cap = self._options.outage_max_backoff_s if outage else policy.max_backoff_s
        return random.uniform(0, min(cap, policy.initial_backoff_s * 2 ** (tries - 1)))

    def _retrying(self) -> AsyncRetrying:
        """The policy for the tries after a failed first one (made outside tenacity)."""
        policy = self._options.retry

        def stop(state: RetryCallState) -> bool:
            # A store outage is not the message's fault: wait for the store, however long.
            exc = state.outcome.exception() if state.outcome is not None else None
            if exc is not None and self._is_outage(exc):
                return False
            return state.attempt_number + 1 >= policy.max_attempts

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            return self._backoff(state.attempt_number + 1, exc)

        return AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(_should_retry),
            reraise=True,
        )

    async def _dead_letter(
        self,
        record: Message,
        exc: BaseException,
        attempts: int,
        env: Envelope[Any] | None = None,
    ) -> None:
        code = exc.code if isinstance(exc, CadenzaError) else type(exc).__name__
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        metrics.DLQ.labels(record.topic, code).inc()
        if record.topic == self._dlq_topic:  # never ping-pong inside the DLQ itself
            log.error(
                "group %s: dropping undecodable dead letter at %s: %s",
                self.group,
                record.offset,
                reason,
            )
            return
        letter = DeadLetter(
            original_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key.decode("utf-8", "replace") if record.key is not None else None,
            headers={k: v.decode("utf-8", "replace") for k, v in record.headers},
            value_b64=base64.b64encode(record.value).decode(),
            reason=reason,
            error_code=code,
            attempts=attempts,
            consumer_group=self.group,
        )
        dead = Envelope(
            payload=letter,
            source=self._source,
            tenant_id=(env.tenant_id if env else record.header("ce_tenantid")) or DEFAULT_TENANT,
            plan_id=env.plan_id if env else record.header("ce_planid"),
            task_id=env.task_id if env else record.header("ce_taskid"),
            subject=f"{record.topic}/{record.partition}/{record.offset}",
        )
        # The DLQ write must not be lost: keep trying (the message stays uncommitted meanwhile).
        async for attempt in AsyncRetrying(
            stop=stop_never,
            wait=wait_random_exponential(multiplier=0.1, max=5.0),
            retry=retry_if_exception(_not_cancelled),
            reraise=True,
        ):
            with attempt:
                await self._publisher.publish(Topic.DLQ, dead)

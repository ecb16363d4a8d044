"""The outbox relay: publishes committed outbox rows to the bus, then deletes them.

The hot path publishes its own rows: a writer that just committed hands them to
``publish_committed``, which sends them at once and deletes them afterwards — the rows of
many batches in one statement, every ``delete_interval_s`` (1 s). The rows were written
with the writer's ``publisher`` id, so relays leave them alone for ``direct_grace_s``; a
row still there after that (its writer died between commit and send, or before its
delete) is published by the relay's slow poll. A failed send hands the rows to the relay at
once. Low-rate writers call ``notify()`` after commit instead. A published row is deleted,
so the table holds only what is in flight (at-least-once everywhere; every consumer is
idempotent).

Rows on a topic nobody waits on (the orchestrator's run timeline) may ``linger``: they wait
a few milliseconds for the rows of the commits that follow and leave with them in ONE send,
so a chain of quick commits costs the broker (and that topic's consumers) one request per
linger, not one per commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from datetime import timedelta
from uuid import uuid4

from cadenza_events import Publisher, RawRecord
from cadenza_events.tasks import cancel_and_wait
from cadenza_state import (
    OutboxMessage,
    StagedMessage,
    claim_unpublished,
    delete_published,
    oldest_unpublished,
    purge_published,
    release_to_relay,
    utcnow,
)
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .linger import Linger
from .periodic import Periodic

log = logging.getLogger("cadenza.relay")

RELAYED = Counter("cadenza_outbox_relayed_total", "Outbox rows published to the bus.")
DIRECT = Counter(
    "cadenza_outbox_published_directly_total",
    "Outbox rows published by the process that committed them, right after the commit "
    "(the rest went through the relay's pass: notified writers, crash recovery).",
)
DELETED = Counter(
    "cadenza_outbox_deleted_total",
    "Outbox rows a writer published itself and then deleted (in batches).",
)
DELETE_PASSES = Counter(
    "cadenza_outbox_delete_passes_total",
    "Passes deleting the outbox rows a writer published itself, by outcome (ok, error: "
    "the rows stay queued for the next pass).",
    ["outcome"],
)
PURGED = Counter(
    "cadenza_outbox_purged_total",
    "Outbox rows an older release marked published, deleted after retention.",
)
BACKLOG_AGE = Gauge(
    "cadenza_outbox_oldest_unpublished_seconds",
    "How long the oldest outbox row still to publish has waited (0: none), measured by "
    "each relay's poll. Rows are published at once and deleted within a second or two, so "
    "a growing value means committed events are not reaching Kafka.",
)
LINGERED = Counter(
    "cadenza_outbox_lingered_total",
    "Outbox rows a writer published itself after they waited for others to share a send "
    "(OutboxRelay.linger: the run timeline); rows per send = this / "
    "cadenza_outbox_linger_sends_total.",
)
LINGER_SENDS = Counter(
    "cadenza_outbox_linger_sends_total",
    "Sends of rows that lingered: one produce request each, however many commits wrote them.",
)
RELAY_LAG = Histogram(
    "cadenza_outbox_relay_lag_seconds",
    "Time from outbox insert to publication.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)


def _records(rows: Sequence[StagedMessage | OutboxMessage]) -> list[RawRecord]:
    """Outbox rows as the publisher's raw records, in the given (id) order."""
    return [
        (r.topic, r.key.encode() if r.key is not None else None, r.payload, r.kafka_headers())
        for r in rows
    ]


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        publisher: Publisher,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        retention_s: float = 600.0,
        purge_interval_s: float = 60.0,
        direct_grace_s: float = 10.0,
        delete_interval_s: float = 1.0,
    ) -> None:
        self.publisher_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid4().hex[:8]}"
        """Written on the rows this process publishes itself (``publish_committed``)."""
        self._direct_grace_s = direct_grace_s
        self._delete_interval_s = delete_interval_s
        self._sent: list[int] = []
        """Rows sent by ``publish_committed`` and not yet deleted."""
        self._deleter: Periodic | None = None
        self._sends: set[asyncio.Task[int]] = set()
        """``publish_soon`` sends in flight."""
        self._linger_topics: frozenset[str] = frozenset()
        self._lingering: list[StagedMessage] = []
        """Committed rows waiting for their send (``linger``), in the order handed."""
        self._linger = Linger(
            0.0, lambda: bool(self._lingering), self._send_lingering, "outbox-linger"
        )
        self._retention_s = retention_s
        self._purge_interval_s = purge_interval_s
        self._next_purge = time.monotonic() + purge_interval_s
        self._sessions = sessions
        self._publisher = publisher
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def linger(self, topics: Sequence[str], seconds: float) -> None:
        """Rows on ``topics`` handed to ``publish_committed`` wait up to ``seconds`` for the
        rows of later commits and leave with them in ONE send, in the order handed (so
        one key's records keep their order, whatever path of this process committed
        them). For records nobody waits on: a run's timeline, not a task to run. 0: every
        row at once."""
        self._linger_topics = frozenset(topics) if seconds > 0 else frozenset()
        self._linger.seconds = seconds

    def notify(self) -> None:
        """Something was committed to the outbox: publish it now."""
        self._wakeup.set()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-relay")
        self._deleter = Periodic(
            "outbox-deleter",
            self.flush_deletes,
            self._delete_interval_s,
            log=log,
            passes=DELETE_PASSES,
        )
        self._deleter.start()

    async def stop(self, grace_s: float = 5.0) -> None:
        task, self._task = self._task, None
        await self._linger.drain(grace_s)  # what lingers is sent now
        if task is not None:
            # Let an in-flight batch commit: a cancel inside its transaction can also cancel
            # the rollback, leaving the connection holding its lock (SQLite: the flush below
            # then waits out the busy timeout). Cancel only a batch stuck past the grace.
            self._stopping = True
            self._wakeup.set()
            await asyncio.wait({task}, timeout=grace_s)
            await cancel_and_wait(task)  # a no-op for a batch that ended within the grace
        if self._sends:  # sends of committed rows a request handler left running
            await asyncio.wait(set(self._sends), timeout=grace_s)
        deleter, self._deleter = self._deleter, None
        if deleter is not None:
            await deleter.stop()
        # Best effort: flush what is committed so a graceful stop leaves nothing behind.
        with contextlib.suppress(Exception):
            await self.flush_deletes()
        with contextlib.suppress(Exception):
            while await self.relay_once():
                pass

    async def publish_committed(
        self, rows: Sequence[StagedMessage], *, appended: asyncio.Event | None = None
    ) -> int:
        """Publish rows this process just committed (written with its ``publisher_id``),
        right away (rows on a ``linger`` topic: with the next lingering send); returns how
        many it sent or queued. No database round trip on the way: their
        delete is queued for ``flush_deletes``. A failed send hands them to the relay.

        ``appended`` is set once the records are in the producer's queue (or their send
        failed, or there were none), before their acknowledgements: a writer that orders its
        commits' sends starts the next then."""
        try:
            return await self._publish_committed(rows, appended)
        finally:
            if appended is not None:
                appended.set()

    async def _publish_committed(
        self, rows: Sequence[StagedMessage], appended: asyncio.Event | None
    ) -> int:
        mine = [r for r in rows if r.id is not None]
        later = [r for r in mine if r.topic in self._linger_topics]
        if later:
            self._linger_rows(later)
            mine = [r for r in mine if r.topic not in self._linger_topics]
        return len(later) + (await self._send_committed(mine, appended) if mine else 0)

    def _linger_rows(self, rows: list[StagedMessage]) -> None:
        self._lingering.extend(rows)
        self._linger.poke()

    async def _send_lingering(self) -> None:
        rows, self._lingering = self._lingering, []
        LINGER_SENDS.inc()
        LINGERED.inc(len(rows))
        await self._send_committed(rows, None)

    async def _send_committed(
        self, mine: list[StagedMessage], appended: asyncio.Event | None
    ) -> int:
        ids = [r.id for r in mine]
        started = time.perf_counter()
        try:
            await self._publisher.publish_raw_many(
                _records(mine), appended=appended.set if appended is not None else None
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning(
                "publishing %d committed outbox rows failed; the relay retries",
                len(mine),
                exc_info=True,
            )
            await self._release(ids)
            return 0
        await self._published(ids)
        RELAY_LAG.observe(time.perf_counter() - started)
        return len(mine)

    async def published_early(self, rows: Sequence[StagedMessage], *, sent: bool) -> int:
        """Rows this process committed whose records it handed to the bus BEFORE the commit
        (the orchestrator's early dispatch), once that send ended: ``sent``, their delete
        is queued; else they go to the relay, as a failed ``publish_committed`` does.
        Returns how many were published."""
        ids = [r.id for r in rows if r.id is not None]
        if not ids:
            return 0
        if not sent:
            await self._release(ids)
            return 0
        await self._published(ids)
        return len(ids)

    async def _published(self, ids: list[int]) -> None:
        """Rows this process published itself: their delete queued (made now when the relay
        is not running: tools, tests), and counted."""
        self._sent.extend(ids)
        if self._deleter is None:
            try:
                await self.flush_deletes()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("deleting %d published outbox rows failed", len(ids), exc_info=True)
        RELAYED.inc(len(ids))
        DIRECT.inc(len(ids))

    def publish_soon(self, rows: Sequence[StagedMessage]) -> None:
        """``publish_committed`` in a task of its own, for a caller that answers before the
        send (a request handler): ``stop`` waits for these sends."""
        task = asyncio.create_task(self.publish_committed(rows), name="outbox-publish")
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _release(self, ids: list[int]) -> None:
        """Unsent rows go to the relays now (not after the grace), and the relay wakes."""
        try:
            async with self._sessions() as session, session.begin():
                await release_to_relay(session, ids)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database is down too: the relay takes them after the grace
            log.warning("could not hand %d outbox rows to the relay", len(ids), exc_info=True)
        self.notify()

    async def flush_deletes(self) -> int:
        """Delete, in ONE statement, the rows ``publish_committed`` sent since the last
        flush; returns how many. On failure they stay queued for the next flush (meanwhile a
        relay may send them again after the grace: consumers are idempotent)."""
        sent, self._sent = self._sent, []
        if not sent:
            return 0
        try:
            async with self._sessions() as session, session.begin():
                await delete_published(session, sent)
        except BaseException:
            self._sent[:0] = sent
            raise
        DELETED.inc(len(sent))
        return len(sent)

    async def backlog_age(self) -> float:
        """Seconds the oldest row still to publish has waited; 0 when there is none."""
        async with self._sessions() as session:
            oldest = await oldest_unpublished(session)
        return 0.0 if oldest is None else max(0.0, (utcnow() - oldest).total_seconds())

    async def purge_once(self) -> int:
        """Delete rows an older release marked published more than ``retention_s`` ago;
        returns how many."""
        async with self._sessions() as session, session.begin():
            return await purge_published(
                session, older_than=utcnow() - timedelta(seconds=self._retention_s)
            )

    async def relay_once(self) -> int:
        """Publish one batch; returns how many rows it published."""
        async with self._sessions() as session, session.begin():
            rows = await claim_unpublished(
                session,
                self._batch_size,
                direct_before=utcnow() - timedelta(seconds=self._direct_grace_s),
            )
            if not rows:
                return 0
            # Pipelined, in id order: rows with one key keep their order on its partition.
            await self._publisher.publish_raw_many(_records(rows))
            await delete_published(session, [r.id for r in rows])
        now = time.time()
        for row in rows:
            RELAY_LAG.observe(max(0.0, now - row.created_at.timestamp()))
        RELAYED.inc(len(rows))
        return len(rows)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that lands
            # as the wakeup fires, and the relay would then never end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval_s):
                    await self._wakeup.wait()
            self._wakeup.clear()
            if self._stopping:
                return  # stop() flushes what is left
            try:
                # Measured before publishing: while Kafka is down the publish below fails,
                # and this is what shows how long committed events have waited.
                BACKLOG_AGE.set(await self.backlog_age())
                while await self.relay_once() >= self._batch_size and not self._stopping:
                    pass
                if time.monotonic() >= self._next_purge:
                    self._next_purge = time.monotonic() + self._purge_interval_s
                    PURGED.inc(await self.purge_once())
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("outbox relay failed (%d in a row); retrying", failures)
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                self._wakeup.set()

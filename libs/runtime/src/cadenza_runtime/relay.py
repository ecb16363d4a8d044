"""The outbox relay: publishes committed outbox rows to the bus, then marks them published.

The hot path publishes its own rows: a writer that just committed hands them to
``publish_committed`` (one statement claims and marks them by id, then the publish, then
the commit — per transaction, not per event). Low-rate writers call ``notify()`` after
commit instead. A slow poll catches rows left behind by a crash; published rows are purged
after ``retention_s`` (at-least-once; every consumer is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import timedelta

from cadenza_events import Publisher, RawRecord
from cadenza_state import (
    OutboxMessage,
    StagedMessage,
    claim_for_publishing,
    claim_unpublished,
    mark_published,
    purge_published,
    utcnow,
)
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger("cadenza.relay")

RELAYED = Counter("cadenza_outbox_relayed_total", "Outbox rows published to the bus.")
DIRECT = Counter(
    "cadenza_outbox_published_directly_total",
    "Outbox rows published by the process that committed them, right after the commit "
    "(the rest went through the relay's pass: notified writers, crash recovery).",
)
PURGED = Counter("cadenza_outbox_purged_total", "Published outbox rows deleted after retention.")
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
    ) -> None:
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

    def notify(self) -> None:
        """Something was committed to the outbox: publish it now."""
        self._wakeup.set()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, grace_s: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is not None:
            # Let an in-flight batch commit: a cancel inside its transaction can also cancel
            # the rollback, leaving the connection holding its lock (SQLite: the flush below
            # then waits out the busy timeout). Cancel only a batch stuck past the grace.
            self._stopping = True
            self._wakeup.set()
            _done, pending = await asyncio.wait({task}, timeout=grace_s)
            if pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Best effort: flush what is committed so a graceful stop leaves nothing behind.
        with contextlib.suppress(Exception):
            while await self.relay_once():
                pass

    async def publish_committed(self, rows: Sequence[StagedMessage]) -> int:
        """Publish rows this process just committed, right away; returns how many it sent.

        Rows a concurrent relay pass locked first are left to it (no duplicate). A failure
        leaves the rows unpublished for the relay's next pass, which it wakes."""
        by_id = {r.id: r for r in rows if r.id is not None}
        if not by_id:
            return 0
        started = time.perf_counter()
        try:
            async with self._sessions() as session, session.begin():
                ids = await claim_for_publishing(session, sorted(by_id))
                if not ids:
                    return 0
                mine = [by_id[i] for i in ids]
                # Marked before it is sent, in the same transaction: a failure rolls back.
                await self._publisher.publish_raw_many(_records(mine))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning(
                "publishing %d committed outbox rows failed; the relay retries",
                len(by_id),
                exc_info=True,
            )
            self.notify()
            return 0
        RELAY_LAG.observe(time.perf_counter() - started)
        RELAYED.inc(len(ids))
        DIRECT.inc(len(ids))
        return len(ids)

    async def purge_once(self) -> int:
        """Delete rows published more than ``retention_s`` ago; returns how many."""
        async with self._sessions() as session, session.begin():
            return await purge_published(
                session, older_than=utcnow() - timedelta(seconds=self._retention_s)
            )

    async def relay_once(self) -> int:
        """Publish one batch; returns how many rows it published."""
        async with self._sessions() as session, session.begin():
            rows = await claim_unpublished(session, self._batch_size)
            if not rows:
                return 0
            # Pipelined, in id order: rows with one key keep their order on its partition.
            await self._publisher.publish_raw_many(_records(rows))
            await mark_published(session, [r.id for r in rows])
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

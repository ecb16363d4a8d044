"""Broadcast listeners: every process hears every record published after it started.

A consumer group shares a topic's partitions among its members, so a record reaches ONE of
them. A control message (``run.control``: "stop this run's tasks") must reach EVERY worker
process, and only while it is news. A ``Listener`` therefore joins no group: it reads all
partitions from their end as of ``start()``, commits nothing, retries nothing and
dead-letters nothing. What it misses (it was not running, the broker was away) must be
covered by a slower, durable path — for ``run.control``, the Redis marker that claims and
the worker's heartbeat read (docs/execution.md, Cancel).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from prometheus_client import Counter

from .bus import Handler
from .envelope import Message, decode
from .errors import DecodeError
from .labelled import labelled
from .runner import fetch_backoff_s
from .tasks import cancel_and_wait
from .tracing import consume_span

log = logging.getLogger("cadenza.events.broadcast")

HEARD = Counter(
    "cadenza_bus_broadcast_messages_total",
    "Broadcast records a listener heard, by outcome (handled, undecodable, failed).",
    ["topic", "outcome"],
)

_FETCH_TIMEOUT_S = 1.0
_MAX_RECORDS = 500


class BroadcastTransport(Protocol):
    """Where a listener's records come from: every partition of its topics, from the end."""

    async def start(self) -> None:
        """Take every partition's end as the starting point; returns once it is taken."""
        ...

    async def fetch(self, max_records: int, timeout_s: float) -> list[Message]: ...

    async def close(self) -> None: ...


class Listener:
    """``await listener.start()`` / ``await listener.stop()``; ``handler`` is called once per
    record published after ``start()`` returned, one record at a time, in offset order per
    partition. A failing handler is logged and counted; the record is not tried again."""

    def __init__(self, transport: BroadcastTransport, handler: Handler, name: str) -> None:
        self._transport = transport
        self._handler = handler
        self.name = name
        """Shown in logs, spans and the task name (there is no group)."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        await self._transport.start()
        self._task = asyncio.create_task(self._run(), name=f"listener:{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
            await self._transport.close()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                records = await self._transport.fetch(_MAX_RECORDS, _FETCH_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.warning(
                    "%s: fetching failed (%d in a row)", self.name, failures, exc_info=failures == 1
                )
                await asyncio.sleep(fetch_backoff_s(failures))
                continue
            failures = 0
            for record in records:
                await self._deliver(record)

    async def _deliver(self, record: Message) -> None:
        try:
            env = decode(record)
        except DecodeError as exc:
            labelled(HEARD, record.topic, "undecodable").inc()
            log.warning(
                "%s: skipping an undecodable record of %s: %s", self.name, record.topic, exc
            )
            return
        try:
            with consume_span(env, record, self.name):
                await self._handler(env)
        except asyncio.CancelledError:
            raise
        except Exception:
            labelled(HEARD, record.topic, "failed").inc()
            log.exception("%s: handling %s (%s) failed", self.name, env.type, env.id)
            return
        labelled(HEARD, record.topic, "handled").inc()

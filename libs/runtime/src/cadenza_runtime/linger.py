"""A send that waits a little for company.

Writes nobody waits on (the orchestrator's run timeline to Kafka, its runs' hot statuses to
Redis) are gathered for a few milliseconds and sent together: a chain of quick commits then
costs the broker or Redis one request per linger, not one per commit. ``Linger`` is that
wait once: the writer queues what it has, ``poke``s, and ``send`` is called ``seconds``
later, again for what came while a send was out, until nothing waits. ``drain`` (a stop, a
settle) sends at once. One send at a time, so what is queued leaves in the order queued.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from cadenza_events.tasks import cancel_and_wait


class Linger:
    def __init__(
        self,
        seconds: float,
        waiting: Callable[[], bool],
        send: Callable[[], Awaitable[None]],
        name: str,
    ) -> None:
        self.seconds = seconds
        self._waiting = waiting
        """Whether something is queued (the writer's own queue)."""
        self._send = send
        """Sends (and takes off the queue) all that is queued; never raises but cancelled."""
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self._cut = asyncio.Event()
        """Set by ``drain``: what waits leaves now."""

    def poke(self) -> None:
        """Something was queued: a send follows within ``seconds``."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Send what waits now, and wait for it; past ``timeout_s`` the send in progress is
        cancelled (what it held stays with the writer's fallback)."""
        self._cut.set()
        try:
            task, self._task = self._task, None
            if task is not None and not task.done():
                await asyncio.wait({task}, timeout=timeout_s)
                await cancel_and_wait(task)
            if self._waiting():
                await self._send()
        finally:
            self._cut.clear()  # started again, it lingers again

    async def _run(self) -> None:
        # What is queued while a send is out leaves with the next round of this loop.
        while self._waiting():
            if not self._cut.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.seconds):
                        await self._cut.wait()
            await self._send()

"""Run a service until SIGINT/SIGTERM, then stop it gracefully."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


def _on_shutdown_signal(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def wait_for_shutdown_signal() -> None:
    stop = asyncio.Event()
    _on_shutdown_signal(stop)
    await stop.wait()


async def run_until_signal(
    start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
) -> None:
    # Handlers go in before start(): a signal that arrives while starting still stops the
    # service gracefully instead of killing the process.
    stopping = asyncio.Event()
    _on_shutdown_signal(stopping)
    await start()
    try:
        await stopping.wait()
    finally:
        await stop()

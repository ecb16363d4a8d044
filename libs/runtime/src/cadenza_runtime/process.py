"""Run a service until SIGINT/SIGTERM, then stop it gracefully."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


async def wait_for_shutdown_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_until_signal(
    start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
) -> None:
    await start()
    try:
        await wait_for_shutdown_signal()
    finally:
        await stop()

"""Stopping a background asyncio task for good."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any], *, nudge_s: float = 1.0) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again every ``nudge_s``
    while it runs on. An error it ended with is raised; its cancellation is not.

    A cancellation can be lost inside a library — turned into an error the task's loop
    catches and logs, or swallowed — and then ``task.cancel(); await task`` waits for ever:
    once per full CI run the worker's presence loop did exactly that on stop."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=nudge_s)
    if not task.cancelled():
        task.result()

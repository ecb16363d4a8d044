"""What bench/orchestrator_step.py and bench/worker_step.py share: a task's envelope as its
sender makes it, and timing one awaited call."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cadenza_events import Envelope
from cadenza_events.payloads import Payload

P = TypeVar("P", bound=Payload)


def task_envelope(payload: P, source: str, run_id: str, task_id: str) -> Envelope[P]:
    """Attempt 1 of ``task_id`` in ``run_id``, from ``source``."""
    return Envelope(
        payload=payload,
        source=source,
        tenant_id="bench",
        plan_id=run_id,
        task_id=task_id,
        attempt=1,
    )


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Wall and CPU seconds of ``await call()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    await call()
    return time.perf_counter() - wall, time.process_time() - cpu

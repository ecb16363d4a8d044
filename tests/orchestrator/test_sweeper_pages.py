"""The sweeper pages through dispatched tasks: on SQLite and on PostgreSQL (its keyset
query), a lost task behind more live ones than a sweep examines is found."""

from __future__ import annotations

from typing import Any

from cadenza_events import TaskReady
from cadenza_runtime import keys
from orchestrator_stack import Reply, Stack
from support import assert_eventually


async def test_more_live_tasks_than_a_sweep_examines_cannot_hide_a_lost_one(
    stack: Stack,
) -> None:
    """A sweep examines at most ``sweep_batch_size`` tasks, oldest first. Each sweep goes on
    where the last full page ended, so a lost task behind more live ones than a page holds
    is found within a few sweeps, not only once the older tasks finish."""
    await stack.restart_orchestrator(sweep_batch_size=2)
    hot = stack.resources.hot
    await hot.redis.set(hot.key(keys.worker_alive("w1")), "1", ex=600)
    live, lost = ["a", "b", "c", "d"], "e"

    async def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        tid, n = ready.task_id, ready.attempt
        await stack.set_started_marker(tid, n)
        if ready.node_id in live:  # long tasks of a worker that still heartbeats
            await hot.acquire_lease(keys.task_lease(tid), f"w1:{n}", 60_000)
        return None  # the lost one: started, then its worker died without a lease left

    stack.worker.script = script
    spec = {
        "name": "paged",
        "tasks": [{"id": node, "tool": "transform", "with": {}} for node in [*live, lost]],
    }
    await stack.submit(spec)
    await assert_eventually(lambda: len(stack.worker.received) == 5)
    # Pages of two, oldest first: (a, b), (c, d), then (e): found on the third sweep.
    assert [await stack.orchestrator.sweep_once() for _ in range(3)] == [0, 0, 1]
    again = await assert_eventually(lambda: [r for r in stack.worker.received if r.attempt == 2])
    assert [r.node_id for r in again] == [lost]
    # The end was reached: the next sweep starts from the oldest again.
    assert await stack.orchestrator.sweep_once() == 0

"""The sweeper, on SQLite and the memory bus and on PostgreSQL and Kafka: it pages through
dispatched tasks (a lost task behind more live ones than a sweep examines is found), and
with two orchestrators each sweeps only the runs whose results it applies."""

from __future__ import annotations

from typing import Any

from cadenza_events import TaskReady
from cadenza_orchestrator import Orchestrator
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


async def test_each_orchestrator_sweeps_only_the_runs_whose_results_it_applies(
    stack: Stack,
) -> None:
    """Two orchestrators share the partitions; twelve or more runs' tasks are lost. Each sweeper
    dispatches again exactly the tasks of the runs whose ``task.result`` partition it holds
    (so one process writes a run's state), and together they miss none."""
    second = Orchestrator(stack.resources, stack.settings)
    await second.start()
    try:
        first = stack.orchestrator

        marked: list[str] = []

        async def lost(ready: TaskReady, params: dict[str, Any]) -> Reply:
            if ready.attempt == 1:  # started, then its worker died without a lease left
                await stack.set_started_marker(ready.task_id, ready.attempt)
                marked.append(ready.run_id)
                return None
            return {"output": {}}

        stack.worker.script = lost

        def split() -> bool:  # the group rebalanced: each holds some partitions
            return any(first.sweeps(f"r{i}") != second.sweeps(f"r{i}") for i in range(12))

        await assert_eventually(split, timeout=30, message="the group never split")
        spec = {"name": "one", "tasks": [{"id": "a", "tool": "transform", "with": {}}]}
        runs = [await stack.submit(spec) for _ in range(12)]
        # Run ids are random: all twelve may miss the one partition of three an orchestrator
        # holds (less than 1 in 100). More runs until each holds some.
        while not all(any(o.sweeps(r) for r in runs) for o in (first, second)):
            assert len(runs) < 60, "one orchestrator never held a run's partition"
            runs.append(await stack.submit(spec))
        # Every marker set (a task received is not yet one whose worker died).
        await assert_eventually(lambda: len(marked) == len(runs), timeout=30)
        mine = {o: {r for r in runs if o.sweeps(r)} for o in (first, second)}
        assert mine[first], mine  # the group did not move meanwhile: both still hold some
        assert mine[second], mine
        assert not mine[first] & mine[second]
        assert mine[first] | mine[second] == set(runs)
        assert await first.sweep_once() == len(mine[first])
        assert await second.sweep_once() == len(mine[second])

        def again() -> list[str]:
            return sorted(r.run_id for r in stack.worker.received if r.attempt == 2)

        await assert_eventually(lambda: len(again()) >= len(runs), timeout=30)
        assert again() == sorted(runs)  # each once, none missed
        for run_id in runs:
            assert (await stack.wait_run(run_id)).status == "succeeded"
    finally:
        await second.stop()

"""The runs' hot statuses of successive commits go to Redis together (``HotStatusWrites``):
a commit's commands wait up to the linger for the commits after it and leave in ONE
pipeline, in commit order; a settle sends what lingers at once; with no linger each
commit's are sent before its turn ends. On fakeredis and on a real Redis."""

from __future__ import annotations

import asyncio
import uuid

from cadenza_orchestrator import metrics
from cadenza_orchestrator.hot_status import HotStatusWrites, add_counts, set_counts
from cadenza_state import HotState
from orchestrator_stack import Stack
from support import assert_eventually

TTL = 60


def sends() -> tuple[float, float]:
    return metrics.HOT_STATUS_SENDS._value.get(), metrics.HOT_STATUS_COMMITS._value.get()


async def plan_then_two_results(writes: HotStatusWrites, hot: HotState, run_id: str) -> None:
    """Three commits of one run: planned (3 tasks), then a result, then another."""
    set_counts(
        hot, writes.pipeline(), run_id, tenant_id="acme", status="running", total=3, done=0,
        ttl_s=TTL,
    )  # fmt: skip
    await writes.staged()
    for _ in range(2):
        add_counts(hot, writes.pipeline(), run_id, status="running", added=0, done=1, ttl_s=TTL)
        await writes.staged()


async def test_commits_within_the_linger_share_one_pipeline_in_order(stack: Stack) -> None:
    hot = stack.resources.hot
    writes = HotStatusWrites(hot, linger_s=0.2)
    run_id = f"run-{uuid.uuid4().hex}"
    before = sends()
    await plan_then_two_results(writes, hot, run_id)
    assert await hot.get_run_status(run_id) is None  # still lingering

    async def written() -> bool:
        status = await hot.get_run_status(run_id)
        return status is not None and (status["tasks_total"], status["tasks_done"]) == ("3", "2")

    await assert_eventually(written, timeout=10, message="the statuses were never sent")
    sent, commits = sends()
    assert (sent - before[0], commits - before[1]) == (1, 3)  # three commits, one trip


async def test_a_flush_sends_what_lingers_at_once(stack: Stack) -> None:
    hot = stack.resources.hot
    writes = HotStatusWrites(hot, linger_s=3600)
    run_id = f"run-{uuid.uuid4().hex}"
    await plan_then_two_results(writes, hot, run_id)
    async with asyncio.timeout(5):  # not after the hour
        await writes.flush()
    status = await hot.get_run_status(run_id)
    assert status is not None
    assert (status["status"], status["tasks_total"], status["tasks_done"]) == ("running", "3", "2")


async def test_without_a_linger_each_commit_is_sent_before_its_turn_ends(stack: Stack) -> None:
    hot = stack.resources.hot
    writes = HotStatusWrites(hot, linger_s=0)
    run_id = f"run-{uuid.uuid4().hex}"
    before = sends()
    set_counts(
        hot, writes.pipeline(), run_id, tenant_id="acme", status="running", total=1, done=0,
        ttl_s=TTL,
    )  # fmt: skip
    await writes.staged()
    status = await hot.get_run_status(run_id)
    assert status is not None
    assert status["tasks_total"] == "1"
    assert sends()[0] == before[0] + 1


async def test_a_run_finished_by_a_batch_has_its_hot_status_once_settled(stack: Stack) -> None:
    """The orchestrator's own writes linger (its default); a settled batch has sent them."""
    assert stack.orchestrator.handlers.hot_writes.linger_s > 0
    run_id = await stack.submit({"name": "one", "tasks": [{"id": "a", "tool": "noop"}]})
    assert (await stack.wait_run(run_id)).status == "succeeded"
    await stack.orchestrator.handlers.settle()
    status = await stack.resources.hot.get_run_status(run_id)
    assert status is not None
    assert (status["status"], status["tasks_done"]) == ("succeeded", "1")

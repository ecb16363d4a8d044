"""Before its first side effect an attempt waits for the orchestrator to commit its
dispatch (``DispatchCheck``): the orchestrator may send a task.ready just before the commit
(its early dispatch, marked ``sentbeforecommit``). A task with no side effect runs at once;
an attempt whose dispatch is never committed is given up before any effect, without a
result; a task.ready sent after its commit (unmarked) reads nothing."""

from __future__ import annotations

import dataclasses
import uuid

from cadenza_events import TaskReady, Topic
from cadenza_runtime import keys
from cadenza_state import TaskRecord
from support import assert_eventually
from worker_support import BOTH_STACKS, Stack, metric

pytestmark = BOTH_STACKS

CHECKS = "cadenza_worker_dispatch_checks_total"


async def set_attempt(stack: Stack, task_id: str, attempt: int) -> None:
    """What the orchestrator's commit of the dispatch makes visible."""
    async with stack.resources.sessions() as session, session.begin():
        row = await session.get(TaskRecord, task_id)
        assert row is not None
        row.attempt = attempt


async def dispatch_early(stack: Stack, task: TaskReady) -> None:
    """What the orchestrator's early dispatch sends: the record marked sent before commit."""
    env = dataclasses.replace(stack.envelope(task), sent_before_commit=True)
    await stack.resources.publisher.publish(Topic.TASK_READY, env)


def checks() -> float:
    return sum(metric(CHECKS, outcome=o) for o in ("committed", "waited", "not_committed"))


async def test_an_effect_waits_for_its_dispatch_commit(stack: Stack) -> None:
    """The task.ready came before the commit (the row still says attempt 0): the journaled
    call is not made until the row carries the attempt; then it is, once."""
    waited = metric(CHECKS, outcome="waited")
    await stack.start_worker()
    k = uuid.uuid4().hex
    task = await stack.add_task("flaky", {"failures": 0, "key": k}, attempt=0)
    task = task.model_copy(update={"attempt": 1})
    await dispatch_early(stack, task)
    hot = stack.resources.hot
    # Claimed (its started marker set), yet no call made while the dispatch is uncommitted.
    await assert_eventually(lambda: hot.redis.exists(hot.key(keys.task_started(task.task_id, 1))))
    assert await stack.flaky_calls(k) == 0
    assert stack.results_for(task.task_id) == []
    await set_attempt(stack, task.task_id, 1)
    result = await stack.result(task)
    assert (result.status, result.output) == ("succeeded", {"calls": 1})
    assert await stack.flaky_calls(k) == 1
    assert metric(CHECKS, outcome="waited") == waited + 1


async def test_a_dispatch_never_committed_is_given_up_before_any_effect(stack: Stack) -> None:
    """The row never carries the attempt (the orchestrator applied its batch again and
    decided otherwise): past the wait the attempt is given up — no call, no result, its
    lease given back, no done marker (a dispatch committed later runs it)."""
    given_up = metric(CHECKS, outcome="not_committed")
    await stack.start_worker(dispatch_wait_s=0.3)
    k = uuid.uuid4().hex
    task = await stack.add_task("flaky", {"failures": 0, "key": k}, attempt=0)
    task = task.model_copy(update={"attempt": 1})
    await dispatch_early(stack, task)
    await assert_eventually(lambda: metric(CHECKS, outcome="not_committed") == given_up + 1)
    assert await stack.flaky_calls(k) == 0
    assert stack.results_for(task.task_id) == []
    await assert_eventually(lambda: _released(stack, task.task_id))
    hot = stack.resources.hot
    assert not await hot.redis.exists(hot.key(keys.task_done(task.task_id, 1)))
    # Its timeline says it ended: the task.started it sent is followed by a release.
    await assert_eventually(lambda: "task.released" in stack.event_kinds(task.task_id))
    assert stack.event_kinds(task.task_id) == ["task.started", "task.released"]
    released = [e.payload for e in stack.events if e.payload.kind == "task.released"]
    assert released[-1].data["reason"] == "dispatch_not_committed"


async def _released(stack: Stack, task_id: str) -> bool:
    return await stack.lease_owner(task_id) is None


async def test_a_task_without_effects_runs_at_once(stack: Stack) -> None:
    """A pure tool reads nothing first: it runs even before the dispatch's commit."""
    before = checks()
    await stack.start_worker()
    task = await stack.add_task("transform", {"x": 1}, attempt=0)
    task = task.model_copy(update={"attempt": 1})
    await dispatch_early(stack, task)
    result = await stack.result(task)
    assert (result.status, result.output) == ("succeeded", {"x": 1})
    assert checks() == before


async def test_an_effect_sent_after_its_commit_reads_nothing(stack: Stack) -> None:
    """Unmarked, the task.ready left after its dispatch's commit (a locked batch, the relay,
    the sweeper): the journaled call is made at once, with no read of the task row — even
    one that (here, set up so) does not carry the attempt."""
    before = checks()
    await stack.start_worker(dispatch_wait_s=0.3)
    k = uuid.uuid4().hex
    task = await stack.add_task("flaky", {"failures": 0, "key": k}, attempt=0)
    task = task.model_copy(update={"attempt": 1})
    await stack.dispatch(task)
    result = await stack.result(task)
    assert (result.status, result.output) == ("succeeded", {"calls": 1})
    assert checks() == before

"""A consumer batch's after-commit work (its outbox rows published and, meanwhile, its runs'
hot statuses set) goes on while the next batch is applied and committed, and runs in commit
order: the next batch's work waits for it, and the consumer waits for at most one of them.
A stop waits for it within a grace, then leaves the rows to the relay."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import pytest
from cadenza_state import StagedMessage
from orchestrator_stack import UNIT, Stack
from support import assert_eventually

pytestmark = pytest.mark.parametrize(
    "stack", [pytest.param(UNIT, marks=pytest.mark.unit)], indirect=True
)

SPEC = {"name": "one", "tasks": [{"id": "a", "tool": "noop"}]}


def before_publish(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    step: Callable[[Sequence[StagedMessage]], Awaitable[None]],
) -> None:
    """Run ``step`` before each publish of committed rows (it may wait, or raise)."""
    relay = stack.resources.relay
    publish = relay.publish_committed

    async def stepped(
        rows: Sequence[StagedMessage], *, appended: asyncio.Event | None = None
    ) -> int:
        await step(rows)
        return await publish(rows, appended=appended)

    monkeypatch.setattr(relay, "publish_committed", stepped)


async def test_the_next_batch_commits_while_the_last_one_publishes(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers = stack.orchestrator.handlers
    gate = asyncio.Event()
    published: list[set[str | None]] = []  # each call's record keys, in call order

    async def held(rows: Sequence[StagedMessage]) -> None:
        await gate.wait()
        published.append({r.key for r in rows})

    before_publish(stack, monkeypatch, held)
    first = await stack.submit(SPEC, publish_times=0)
    second = await stack.submit(SPEC, publish_times=0)

    # The first plan is committed and the consumer gets the partition back, though its
    # task.ready is not sent yet.
    await asyncio.wait_for(handlers.consume_batch([stack.plan_of(first, SPEC)]), 10)
    assert (await stack.run(first)).status == "running"
    assert published == []

    async def hot_status_set() -> dict[str, str] | None:  # it does not wait for Kafka's acks
        return await stack.resources.hot.get_run_status(first)

    await assert_eventually(hot_status_set)
    assert published == []

    # The second is applied and committed meanwhile, then waits for the first's sends.
    consumed = asyncio.create_task(handlers.consume_batch([stack.plan_of(second, SPEC)]))
    await stack.wait_run(second, "running", timeout=10)
    await asyncio.sleep(0)
    assert not consumed.done()

    gate.set()
    await asyncio.wait_for(consumed, 10)
    await handlers.settle()
    # Sent in commit order: the first run's records, then the second's.
    sent_by = [i for run in (first, second) for i, keys in enumerate(published) if run in keys]
    assert len(published) == 2
    assert sent_by == [0, 1]
    for run_id in (first, second):
        status = await stack.resources.hot.get_run_status(run_id)
        assert status is not None
        assert status["tasks_total"] == "1"
    for run_id in (first, second):  # the fake worker got its task.ready: both finish
        assert (await stack.wait_run(run_id)).status == "succeeded"


async def test_a_failing_after_commit_work_does_not_stop_the_next(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers = stack.orchestrator.handlers
    calls = 0

    async def failing_once(rows: Sequence[StagedMessage]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("broker gone")  # beyond what publish_committed lets out

    before_publish(stack, monkeypatch, failing_once)
    first = await stack.submit(SPEC, publish_times=0)
    second = await stack.submit(SPEC, publish_times=0)
    await handlers.consume_batch([stack.plan_of(first, SPEC)])
    await handlers.consume_batch([stack.plan_of(second, SPEC)])
    await handlers.settle()
    # The second batch's work ran after the first's failed: its run finishes.
    assert (await stack.wait_run(second)).status == "succeeded"
    # The first's rows were never sent (they wait in the outbox for the relay).
    assert (await stack.run(first)).status == "running"
    assert not [r for r in stack.worker.received if r.run_id == first]


async def test_a_stop_waits_for_after_commit_work_within_its_grace(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers = stack.orchestrator.handlers
    gate = asyncio.Event()

    async def held(rows: Sequence[StagedMessage]) -> None:
        await gate.wait()

    before_publish(stack, monkeypatch, held)
    run_id = await stack.submit(SPEC, publish_times=0)
    await handlers.consume_batch([stack.plan_of(run_id, SPEC)])
    # Within the grace: the work finishes once the publish can.
    settling = asyncio.create_task(handlers.settle(timeout_s=10))
    await asyncio.sleep(0.05)
    assert not settling.done()
    gate.set()
    await asyncio.wait_for(settling, 5)
    assert (await stack.wait_run(run_id)).status == "succeeded"

    # Past the grace (Kafka hung): cancelled, and the stop goes on.
    gate.clear()
    second = await stack.submit(SPEC, publish_times=0)
    await handlers.consume_batch([stack.plan_of(second, SPEC)])
    await asyncio.wait_for(handlers.settle(timeout_s=0.2), 5)
    assert all(task.done() for task in handlers._afters)
    assert not [r for r in stack.worker.received if r.run_id == second]


async def test_the_next_commit_sends_while_the_last_one_waits_for_its_acks(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers = stack.orchestrator.handlers
    relay = stack.resources.relay
    acked = asyncio.Event()
    sent: list[set[str | None]] = []  # each commit's record keys, as handed to Kafka

    async def acks_held(
        rows: Sequence[StagedMessage], *, appended: asyncio.Event | None = None
    ) -> int:
        sent.append({r.key for r in rows})
        assert appended is not None
        appended.set()  # in the producer's queue; the acknowledgements take their time
        await acked.wait()
        return len(rows)

    monkeypatch.setattr(relay, "publish_committed", acks_held)
    first = await stack.submit(SPEC, publish_times=0)
    second = await stack.submit(SPEC, publish_times=0)
    await handlers.consume_batch([stack.plan_of(first, SPEC)])
    consumed = asyncio.create_task(handlers.consume_batch([stack.plan_of(second, SPEC)]))

    def both_sent() -> bool:
        return len(sent) == 2

    # The second commit's records follow the first's into the queue at once...
    await assert_eventually(both_sent)
    assert first in sent[0]
    assert second in sent[1]
    # ...while the consumer still waits for the first commit's work to end (bounded).
    assert not consumed.done()
    acked.set()
    await asyncio.wait_for(consumed, 5)
    await handlers.settle()

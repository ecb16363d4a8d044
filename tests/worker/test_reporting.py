"""The worker's timeline reporter: events batched per run, none left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from cadenza_events import (
    Envelope,
    RunEvent,
    RunEventBatch,
    TaskReady,
    TaskResult,
    Topic,
    unbatch,
)
from cadenza_worker.reporting import Reporter
from support import assert_eventually

pytestmark = pytest.mark.unit


class SlowPublisher:
    """Records what is published; each publish takes a while (a busy broker)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Topic, Envelope[Any]]] = []

    async def publish_many(self, items: Sequence[tuple[Topic, Envelope[Any]]]) -> None:
        await asyncio.sleep(0.05)
        self.sent.extend(items)

    async def publish(self, topic: Topic, env: Envelope[Any]) -> None:
        self.sent.append((topic, env))


def ready(run_id: str, task_id: str) -> TaskReady:
    return TaskReady(run_id=run_id, task_id=task_id, node_id=task_id, name="noop")


def incoming(task: TaskReady) -> Envelope[Any]:
    return Envelope(payload=task, source="/t", tenant_id="acme", plan_id=task.run_id)


async def test_events_are_batched_per_run_and_none_is_left_behind() -> None:
    publisher = SlowPublisher()
    reporter = Reporter(publisher, "w1", 5.0, linger_s=0.01)  # type: ignore[arg-type]
    a1, a2, b1 = ready("run-a", "a1"), ready("run-a", "a2"), ready("run-b", "b1")
    for task in (a1, a2, b1):
        reporter.event(incoming(task), task, "task.started", "running")
    await asyncio.sleep(0.03)  # the first flush is publishing now
    reporter.event(incoming(a1), a1, "task.finished", "succeeded")  # queued meanwhile

    def kinds() -> list[tuple[str, str]]:
        return [
            (e.payload.task_id, e.payload.kind) for _, env in publisher.sent for e in unbatch(env)
        ]

    await assert_eventually(lambda: len(kinds()) == 4, timeout=5)
    assert kinds() == [
        ("a1", "task.started"),
        ("a2", "task.started"),
        ("b1", "task.started"),
        ("a1", "task.finished"),
    ]
    first = publisher.sent[0][1]
    assert isinstance(first.payload, RunEventBatch)  # run-a's two events: ONE record
    assert (first.plan_id, first.tenant_id) == ("run-a", "acme")
    assert isinstance(publisher.sent[1][1].payload, RunEvent)  # run-b's lone event as itself
    assert all(topic is Topic.RUN_EVENTS for topic, _ in publisher.sent)


async def test_a_result_carries_its_attempts_queued_events_and_no_others() -> None:
    publisher = SlowPublisher()
    reporter = Reporter(publisher, "w1", 5.0, linger_s=10.0)  # type: ignore[arg-type]
    a1, a2 = ready("run-a", "a1"), ready("run-a", "a2")
    reporter.event(incoming(a1), a1, "task.started", "running")
    reporter.event(incoming(a2), a2, "task.started", "running")
    reporter.event(incoming(a1), a1, "task.finished", "succeeded")
    result = TaskResult(run_id="run-a", task_id="a1", attempt=1, status="succeeded")
    await reporter.result(incoming(a1), a1, result)

    (topic, sent), = publisher.sent  # fmt: skip
    assert topic is Topic.TASK_RESULT
    assert [(e.task_id, e.kind) for e in sent.payload.events] == [
        ("a1", "task.started"),
        ("a1", "task.finished"),
    ]
    # a2's event stays queued for the timeline record; a1's are not sent twice.
    await reporter.flush()
    assert [(e.payload.task_id, e.payload.kind) for e in unbatch(publisher.sent[1][1])] == [
        ("a2", "task.started")
    ]


class RefusingPublisher(SlowPublisher):
    """Refuses the first ``refusals`` publishes (a broker restarting)."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals
        self.calls = 0

    async def publish(self, topic: Topic, env: Envelope[Any]) -> None:
        self.calls += 1
        if self.calls <= self.refusals:
            raise ConnectionError("broker away")
        await super().publish(topic, env)


def _result(task: TaskReady) -> TaskResult:
    return TaskResult(run_id=task.run_id, task_id=task.task_id, attempt=1, status="succeeded")


@pytest.mark.parametrize("refusals", [0, 1, 3])
async def test_a_result_is_published_once_after_the_refusals(refusals: int) -> None:
    publisher = RefusingPublisher(refusals)
    reporter = Reporter(publisher, "w1", 5.0)  # type: ignore[arg-type]
    task = ready("run-a", "a1")
    await reporter.result(incoming(task), task, _result(task))
    assert publisher.calls == refusals + 1
    assert [(topic, env.payload.task_id) for topic, env in publisher.sent] == [
        (Topic.TASK_RESULT, "a1")
    ]


async def test_a_result_the_broker_keeps_refusing_fails_the_handler_as_unavailable() -> None:
    from cadenza_events import Unavailable

    publisher = RefusingPublisher(10**6)
    reporter = Reporter(publisher, "w1", 0.3)  # type: ignore[arg-type]
    task = ready("run-a", "a1")
    with pytest.raises(Unavailable) as raised:
        await reporter.result(incoming(task), task, _result(task))
    assert raised.value.code == "result_publish_failed"
    assert publisher.calls >= 2  # the first send, then tenacity's until the deadline
    assert publisher.sent == []


async def test_a_lone_event_travels_as_itself_and_only_its_attempts_result_takes_it() -> None:
    publisher = SlowPublisher()
    reporter = Reporter(publisher, "w1", 5.0, linger_s=10.0)  # type: ignore[arg-type]
    second = ready("run-a", "a1").model_copy(update={"attempt": 2})
    reporter.event(incoming(second), second, "task.started", "running")
    first = ready("run-a", "a1")  # attempt 1's late result must not take attempt 2's events
    await reporter.result(incoming(first), first, _result(first))
    assert publisher.sent[0][1].payload.events == []
    await reporter.flush()
    (_, env) = publisher.sent[1]
    assert isinstance(env.payload, RunEvent)
    assert (env.plan_id, env.task_id, env.attempt, env.subject, env.tenant_id) == (
        "run-a",
        "a1",
        2,
        "a1",
        "acme",
    )
    await reporter.flush()  # nothing left: no second record
    assert len(publisher.sent) == 2

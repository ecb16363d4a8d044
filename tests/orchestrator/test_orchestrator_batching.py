"""The batched event path: a batch is one transaction, a run's timeline travels as a few
chunked records, duplicates inside one batch are applied once."""

from __future__ import annotations

from typing import Any

import pytest
from cadenza_events import (
    Envelope,
    Message,
    RunEventBatch,
    TaskReady,
    TaskResult,
    Topic,
    decode,
)
from cadenza_orchestrator.engine import TIMELINE_CHUNK
from cadenza_state import OutboxMessage
from orchestrator_stack import UNIT, Reply, Stack
from sqlalchemy import select
from support import assert_eventually

unit_only = pytest.mark.parametrize(
    "stack", [pytest.param(UNIT, marks=pytest.mark.unit)], indirect=True
)


async def timeline_records(stack: Stack, run_id: str) -> list[Envelope[Any]]:
    async with stack.resources.sessions() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.topic == stack.resources.registry.name(Topic.RUN_EVENTS),
                    OutboxMessage.key == run_id,
                )
                .order_by(OutboxMessage.id)
            )
        ).all()
    return [
        decode(Message(r.topic, 0, 0, (r.key or "").encode(), r.payload, tuple(r.kafka_headers())))
        for r in rows
    ]


async def test_a_wide_fan_out_timeline_is_chunked_records(stack: Stack) -> None:
    width = 2 * TIMELINE_CHUNK + 10
    spec = {
        "name": "wide",
        "tasks": [{"id": "each", "tool": "noop", "for_each": f"list(range({width}))"}],
    }
    run_id = await stack.submit(spec)
    run = await stack.wait_run(run_id, timeout=60)
    assert run.status == "succeeded", run.error
    records = await timeline_records(stack, run_id)
    sizes = [
        len(env.payload.events) if isinstance(env.payload, RunEventBatch) else 1 for env in records
    ]
    assert max(sizes) <= TIMELINE_CHUNK  # never one giant record (Kafka refuses > 1 MB)
    ready = [e for e in await stack.run_events(run_id) if e.kind == "task.ready"]
    assert len(ready) == width
    assert len(records) < width  # batched: far fewer records than events


@unit_only
async def test_a_duplicate_result_inside_one_batch_is_applied_once(stack: Stack) -> None:
    held: list[TaskReady] = []

    def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        held.append(ready)
        return None  # answered by hand below

    stack.worker.script = script
    run_id = await stack.submit({"name": "dup", "tasks": [{"id": "a", "tool": "noop"}]})
    await assert_eventually(lambda: held)
    ready = held[0]
    result = TaskResult(
        run_id=run_id, task_id=ready.task_id, attempt=ready.attempt, status="succeeded", output=1
    )
    env = Envelope(payload=result, source="/tests", plan_id=run_id, tenant_id="acme")
    await stack.orchestrator.handlers.handle_batch([env, env, env])
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    attempts = await stack.attempts(run_id)
    assert [(a.attempt, a.status) for a in attempts] == [(1, "succeeded")]

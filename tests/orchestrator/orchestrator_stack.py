"""Helpers to drive the orchestrator without a worker (fixtures live in conftest.py).

``stack`` opens Resources on the unit stack (SQLite + MemoryBus + fakeredis + local objects)
or the integration stack (PostgreSQL schema + Kafka topics + Redis prefix + MinIO bucket,
all unique to the test and removed afterwards) and starts an ``Orchestrator`` on them.
``FakeWorker`` consumes ``task.ready`` and answers with scripted ``TaskResult``s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cadenza_events import (
    Envelope,
    Handoff,
    PlanRequested,
    RunCancelRequested,
    RunEvent,
    RunResumeRequested,
    TaskError,
    TaskReady,
    TaskResult,
    Topic,
)
from cadenza_orchestrator import Orchestrator, OrchestratorSettings
from cadenza_runtime import Resources, keys, plan_requested
from cadenza_state import (
    OutboxMessage,
    RunRecord,
    StateSettings,
    TaskAttemptRecord,
    TaskRecord,
    utcnow,
)
from sqlalchemy import select
from support import assert_eventually
from support.cleanup import drop_bucket

UNIT = "unit"
INTEGRATION = "integration"
STACKS = [
    pytest.param(UNIT, marks=pytest.mark.unit),
    pytest.param(INTEGRATION, marks=pytest.mark.integration),
]


# -- scripted worker ---------------------------------------------------------------------

Reply = dict[str, Any] | None
"""What the fake worker answers to a task.ready: ``{"output": ...}`` (succeeded),
``{"error": code}`` (failed), ``{"status": "cancelled"}``, ``{"handoff": {...}}`` (an agent
handing over), or None (stay silent)."""
Script = Callable[[TaskReady, dict[str, Any]], Reply | Awaitable[Reply]]


def transform(ready: TaskReady, params: dict[str, Any]) -> Reply:
    """Like the built-in ``transform`` tool: the output is the rendered params."""
    return {"output": params}


@dataclass
class FakeWorker:
    resources: Resources
    script: Script = transform
    received: list[TaskReady] = field(default_factory=list)
    partition_keys: dict[str, str | None] = field(default_factory=dict)
    """Each task's ``Envelope.partition_key`` as it arrived (its last dispatch's)."""
    sent_before_commit: list[bool] = field(default_factory=list)
    """Each delivery's ``Envelope.sent_before_commit``, in ``received``'s order."""
    params: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    results: list[TaskResult] = field(default_factory=list)
    duplicate_results: bool = False
    committed: Callable[[str], bool] | None = None
    """For a task.ready sent before its commit: whether the orchestrator's batch that sent it
    is over (committed, or applied again); ``script`` is called only then."""

    def by_node(self, node_id: str) -> list[TaskReady]:
        return [r for r in self.received if r.node_id == node_id]

    def dispatch_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for r in self.received:
            counts[r.task_id] += 1
        return dict(counts)

    async def handle(self, env: Envelope[Any]) -> None:
        ready = env.payload
        assert isinstance(ready, TaskReady)
        assert env.task_id == ready.task_id
        assert env.attempt == ready.attempt
        assert env.plan_id == ready.run_id
        params = ready.params
        if params is None:
            assert ready.params_ref is not None
            params = json.loads(await self.resources.objects.get(ready.params_ref))
        self.params[(ready.task_id, ready.attempt)] = params
        self.received.append(ready)
        self.partition_keys[ready.task_id] = env.partition_key
        self.sent_before_commit.append(env.sent_before_commit)
        if env.sent_before_commit and self.committed is not None:
            committed = self.committed
            await assert_eventually(lambda: committed(ready.run_id), timeout=30, interval=0.001)
        reply = self.script(ready, params)
        if asyncio.iscoroutine(reply):
            reply = await reply
        if reply is None:
            return
        await self.reply(ready, reply)

    async def reply(self, ready: TaskReady, reply: dict[str, Any]) -> TaskResult:
        if "error" in reply:
            status = "failed"
            error: TaskError | None = TaskError(
                code=reply["error"],
                message=reply.get("message", "scripted failure"),
                details=reply.get("details"),
            )
        else:
            status = reply.get("status", "succeeded")
            error = None
        result = TaskResult(
            run_id=ready.run_id,
            task_id=ready.task_id,
            attempt=reply.get("attempt", ready.attempt),
            status=status,
            output=reply.get("output"),
            output_ref=reply.get("output_ref"),
            error=error,
            handoff=Handoff.model_validate(reply["handoff"]) if "handoff" in reply else None,
            worker_id="fake-worker",
            started_at=utcnow(),
            events=reply.get("events", []),
        )
        await publish_result(self.resources, result)
        if self.duplicate_results:
            await publish_result(self.resources, result)
        self.results.append(result)
        return result


async def publish_result(resources: Resources, result: TaskResult) -> None:
    env = Envelope(
        payload=result,
        source="/test/worker",
        plan_id=result.run_id,
        task_id=result.task_id,
        attempt=result.attempt,
    )
    await resources.publisher.publish(Topic.TASK_RESULT, env)


# -- the stack ---------------------------------------------------------------------------


@dataclass
class Stack:
    kind: str
    resources: Resources
    orchestrator: Orchestrator
    worker: FakeWorker
    _consumers: list[Any] = field(default_factory=list)

    @property
    def settings(self) -> OrchestratorSettings:
        return self.orchestrator.settings

    async def restart_orchestrator(self, **overrides: Any) -> None:
        await self.orchestrator.stop()
        self.orchestrator = Orchestrator(self.resources, self.settings.model_copy(update=overrides))
        await self.orchestrator.start()

    async def submit(
        self,
        spec: dict[str, Any],
        inputs: dict[str, Any] | None = None,
        *,
        publish_times: int = 1,
        tenant_id: str = "acme",
        replay: dict[str, Any] | None = None,
    ) -> str:
        """Insert a pending run the way the gateway does, then publish plan.requested.
        ``replay``: what a rerun or fork may reuse (as the gateway writes it)."""
        run_id = str(uuid.uuid4())
        async with self.resources.sessions() as session, session.begin():
            session.add(
                RunRecord(
                    id=run_id,
                    tenant_id=tenant_id,
                    workflow_name=spec["name"],
                    spec=spec,
                    inputs=inputs or {},
                    status="pending",
                    parent_run_id=(replay or {}).get("parent_run_id"),
                    replay=replay,
                )
            )
        env = self.plan_of(run_id, spec, inputs, tenant_id=tenant_id, replay=replay)
        for _ in range(publish_times):
            await self.resources.publisher.publish(Topic.PLAN_REQUESTED, env)
        return run_id

    def plan_of(
        self,
        run_id: str,
        spec: dict[str, Any],
        inputs: dict[str, Any] | None = None,
        *,
        tenant_id: str = "acme",
        replay: dict[str, Any] | None = None,
        carries_row: bool = True,
    ) -> Envelope[PlanRequested]:
        """The plan.requested the gateway stages for a run ``submit`` inserted: on
        PostgreSQL it carries the row (unless ``carries_row`` is off: an older writer's)."""
        postgres = self.resources.state.engine.dialect.name == "postgresql"
        plan = plan_requested(
            run_id=run_id,
            workflow_name=spec["name"],
            workflow_version=None,
            spec=spec,
            inputs=inputs or {},
            budget=None,
            replay=replay,
            row_version=0 if postgres and carries_row else None,
        )
        return Envelope(payload=plan, source="/test/gateway", tenant_id=tenant_id, plan_id=run_id)

    async def cancel(self, run_id: str, *, reason: str | None = None) -> None:
        """Send the command the gateway stages for ``POST /v1/runs/{id}/cancel``."""
        command = RunCancelRequested(run_id=run_id, requested_by="key:test", reason=reason)
        env = Envelope(payload=command, source="/test/gateway", plan_id=run_id)
        await self.resources.publisher.publish(Topic.PLAN_REQUESTED, env)

    async def resume(self, run_id: str, *, budget: dict[str, Any] | None = None) -> None:
        """Send the command the gateway stages for ``POST /v1/runs/{id}/resume``."""
        command = RunResumeRequested(run_id=run_id, requested_by="key:test", budget=budget)
        env = Envelope(payload=command, source="/test/gateway", plan_id=run_id)
        await self.resources.publisher.publish(Topic.PLAN_REQUESTED, env)

    async def run(self, run_id: str) -> RunRecord:
        async with self.resources.sessions() as session:
            run = await session.get(RunRecord, run_id)
            assert run is not None
            return run

    async def wait_run(self, run_id: str, *statuses: str, timeout: float = 30.0) -> RunRecord:
        wanted = statuses or ("succeeded", "failed", "cancelled")

        async def check() -> RunRecord:
            run = await self.run(run_id)
            assert run.status in wanted, f"run is {run.status}"
            return run

        return await assert_eventually(check, timeout=timeout, message=f"run never {wanted}")

    async def tasks(self, run_id: str) -> dict[str, TaskRecord]:
        """Task rows by node id (``node[i]`` for fan-out instances)."""
        async with self.resources.sessions() as session:
            rows = (
                await session.scalars(select(TaskRecord).where(TaskRecord.run_id == run_id))
            ).all()
        return {
            r.node_id if r.item_index is None else f"{r.node_id}[{r.item_index}]": r for r in rows
        }

    async def attempts(self, run_id: str) -> list[TaskAttemptRecord]:
        async with self.resources.sessions() as session:
            stmt = (
                select(TaskAttemptRecord)
                .join(TaskRecord, TaskRecord.id == TaskAttemptRecord.task_id)
                .where(TaskRecord.run_id == run_id)
            )
            return list((await session.scalars(stmt)).all())

    async def run_events(self, run_id: str) -> list[RunEvent]:
        """Run events staged in the outbox for this run, in order."""
        from cadenza_events import Message, decode, unbatch

        async with self.resources.sessions() as session:
            stmt = (
                select(OutboxMessage)
                .where(
                    OutboxMessage.topic == self.resources.registry.name(Topic.RUN_EVENTS),
                    OutboxMessage.key == run_id,
                )
                .order_by(OutboxMessage.id)
            )
            rows = (await session.scalars(stmt)).all()
        out = []
        for r in rows:
            env = decode(
                Message(
                    r.topic,
                    0,
                    0,
                    r.key.encode() if r.key else None,
                    r.payload,
                    tuple(r.kafka_headers()),
                )
            )
            events = unbatch(env)
            assert events, env.type
            out.extend(e.payload for e in events)
        return out

    async def set_started_marker(self, task_id: str, attempt: int) -> None:
        hot = self.resources.hot
        await hot.redis.set(hot.key(keys.task_started(task_id, attempt)), "1", ex=600)


def _state_settings(kind: str, unique_id: str, tmp_path: Path) -> StateSettings:
    if kind == UNIT:
        return StateSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
            redis_backend="memory",
            redis_key_prefix=f"{unique_id}:",
            object_store="local",
            object_store_dir=tmp_path / "objects",
        )
    return StateSettings(
        database_schema=unique_id, redis_key_prefix=f"{unique_id}:", s3_bucket=unique_id
    )


async def _cleanup(kind: str, resources: Resources, state: StateSettings) -> None:
    hot = resources.hot
    found = [k async for k in hot.redis.scan_iter(match=f"{hot.prefix}*", count=10_000)]
    if found:
        await hot.redis.delete(*found)
    if kind == UNIT:
        return
    from cadenza_events.kafka import KafkaBus
    from cadenza_state import S3ObjectStore

    bus = resources.bus
    assert isinstance(bus, KafkaBus)
    with contextlib.suppress(Exception):
        await bus.delete_topics()
    objects = resources.objects
    if isinstance(objects, S3ObjectStore):
        await asyncio.to_thread(drop_bucket, objects)

"""Creating a run: the one code path every way a run starts goes through (the gateway's
POST /v1/runs, a trigger's event, a schedule's tick). The caller owns the transaction, so
the run, its ``plan.requested`` and ``run.accepted`` events (staged in the outbox), its
audit entry and whatever the caller adds (a trigger's dedupe row, a schedule's fire row)
commit together or not at all."""

from __future__ import annotations

import uuid
from typing import Any

from cadenza_events import Envelope, PlanRequested, RunEvent, Topic, TopicRegistry
from cadenza_state import (
    AuditLogEntry,
    HotState,
    RunRecord,
    RunStatus,
    TaskRecord,
    TaskStatus,
    utcnow,
)
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from . import keys
from .staging import stage_event

CANCELLABLE_TASK_STATUSES = (TaskStatus.PENDING.value, TaskStatus.READY.value)


async def create_run(
    *,
    session: AsyncSession,
    registry: TopicRegistry,
    tenant_id: str,
    workflow_name: str,
    workflow_version: int | None,
    spec: dict[str, Any],
    inputs: dict[str, Any],
    idempotency_key: str | None,
    actor: str,
    source: str,
    started_by: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> RunRecord:
    """Insert a pending run and stage its ``plan.requested`` and ``run.accepted`` events.

    ``started_by`` (a trigger's event, a schedule's tick) is stored on the run and carried
    by ``run.accepted``, so the timeline shows what started it. Raises IntegrityError at
    once (the insert is flushed first) when another request took the same idempotency key."""
    run = RunRecord(
        id=run_id or str(uuid.uuid4()),
        tenant_id=tenant_id,
        workflow_name=workflow_name,
        workflow_version=workflow_version,
        spec=spec,
        inputs=inputs,
        status=RunStatus.PENDING.value,
        idempotency_key=idempotency_key,
        started_by=started_by,
    )
    session.add(run)
    await session.flush()
    plan = PlanRequested(
        run_id=run.id,
        workflow_name=workflow_name,
        workflow_version=workflow_version,
        spec=spec,
        inputs=inputs,
    )
    await stage_event(
        session,
        registry,
        Topic.PLAN_REQUESTED,
        Envelope(plan, source=source, tenant_id=tenant_id, plan_id=run.id),
    )
    data: dict[str, Any] = {"workflow_name": workflow_name, "workflow_version": workflow_version}
    if started_by is not None:
        data["started_by"] = started_by
    accepted = RunEvent(
        run_id=run.id, kind="run.accepted", status=RunStatus.PENDING.value, data=data
    )
    await stage_event(
        session,
        registry,
        Topic.RUN_EVENTS,
        Envelope(accepted, source=source, tenant_id=tenant_id, plan_id=run.id),
    )
    session.add(
        AuditLogEntry(
            tenant_id=tenant_id,
            actor=actor,
            action="run.created",
            subject=f"run:{run.id}",
            data=data,
        )
    )
    return run


async def cancel_run(
    *, session: AsyncSession, registry: TopicRegistry, run: RunRecord, actor: str, source: str
) -> int:
    """Mark a locked, non-terminal run and its not-yet-running tasks ``cancelled`` and stage
    ``run.cancelled``; returns how many tasks were cancelled. Running tasks are stopped by
    their workers, which watch the Redis marker the caller sets after commit
    (:func:`signal_cancelled`)."""
    now = utcnow()
    run.status = RunStatus.CANCELLED.value
    run.finished_at = now
    run.updated_at = now
    result = await session.execute(
        update(TaskRecord)
        .where(TaskRecord.run_id == run.id, TaskRecord.status.in_(CANCELLABLE_TASK_STATUSES))
        .values(status=TaskStatus.CANCELLED.value, finished_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    cancelled_tasks = int(result.rowcount)  # type: ignore[attr-defined]
    event = RunEvent(
        run_id=run.id,
        kind="run.cancelled",
        status=RunStatus.CANCELLED.value,
        data={"cancelled_tasks": cancelled_tasks},
    )
    await stage_event(
        session,
        registry,
        Topic.RUN_EVENTS,
        Envelope(event, source=source, tenant_id=run.tenant_id, plan_id=run.id),
    )
    session.add(
        AuditLogEntry(
            tenant_id=run.tenant_id,
            actor=actor,
            action="run.cancelled",
            subject=f"run:{run.id}",
            data={"cancelled_tasks": cancelled_tasks},
        )
    )
    return cancelled_tasks


async def signal_cancelled(hot: HotState, run_id: str, ttl_s: int) -> None:
    """Set the marker workers watch and the hot status pollers read (raises on Redis
    trouble; the run is cancelled in the database regardless)."""
    await hot.redis.set(hot.key(keys.run_cancelled(run_id)), utcnow().isoformat(), ex=ttl_s)
    await hot.set_run_status(run_id, {"status": RunStatus.CANCELLED.value}, ttl_s=ttl_s)

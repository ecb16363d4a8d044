"""Data functions for runs; the caller owns the transaction, so a run and the events it
causes (staged in the outbox) commit together or not at all."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from cadenza_events import (
    Envelope,
    PlanRequested,
    RunCancelRequested,
    RunEvent,
    Topic,
    TopicRegistry,
)
from cadenza_runtime import stage_event
from cadenza_state import RunRecord, RunStatus, TaskRecord
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from ..auth.principal import current_actor
from .audit import record_audit

EVENT_SOURCE = "/cadenza/api-gateway"


async def get_run(
    *,
    session: AsyncSession,
    tenant_id: str,
    run_id: str,
    with_tasks: bool = False,
    for_update: bool = False,
) -> RunRecord | None:
    """The tenant's run, optionally with its tasks loaded and its row locked."""
    stmt = select(RunRecord).where(RunRecord.id == run_id, RunRecord.tenant_id == tenant_id)
    if with_tasks:
        stmt = stmt.options(selectinload(RunRecord.tasks))
    if for_update:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def get_run_by_idempotency_key(
    *, session: AsyncSession, tenant_id: str, key: str
) -> RunRecord | None:
    return await session.scalar(
        select(RunRecord).where(RunRecord.tenant_id == tenant_id, RunRecord.idempotency_key == key)
    )


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
    parent_run_id: str | None = None,
    lineage: dict[str, Any] | None = None,
    replay: dict[str, Any] | None = None,
    budget: dict[str, Any] | None = None,
) -> RunRecord:
    """Insert a pending run and stage its ``plan.requested`` and ``run.accepted`` events.
    A rerun or fork also records its parent, what was asked (``lineage``) and what the
    orchestrator may reuse (``replay``, docs/replay.md).

    Raises IntegrityError at once (the insert is flushed first) when another request took
    the same idempotency key."""
    run = RunRecord(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        workflow_name=workflow_name,
        workflow_version=workflow_version,
        spec=spec,
        inputs=inputs,
        status=RunStatus.PENDING.value,
        idempotency_key=idempotency_key,
        parent_run_id=parent_run_id,
        lineage=lineage,
        replay=replay,
        budget=budget,
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
        Envelope(plan, source=EVENT_SOURCE, tenant_id=tenant_id, plan_id=run.id),
    )
    data: dict[str, Any] = {"workflow_name": workflow_name, "workflow_version": workflow_version}
    if lineage is not None:
        data["lineage"] = lineage
    accepted = RunEvent(
        run_id=run.id, kind="run.accepted", status=RunStatus.PENDING.value, data=data
    )
    await stage_event(
        session,
        registry,
        Topic.RUN_EVENTS,
        Envelope(accepted, source=EVENT_SOURCE, tenant_id=tenant_id, plan_id=run.id),
    )
    record_audit(
        session=session,
        tenant_id=tenant_id,
        action=f"run.{lineage['kind']}" if lineage is not None else "run.created",
        subject=f"run:{run.id}",
        data=data,
    )
    return run


async def list_runs(
    *,
    session: AsyncSession,
    tenant_id: str,
    status: str | None,
    workflow_name: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[RunRecord]:
    """The tenant's runs, newest first (created_at, then id), after a keyset position."""
    stmt = select(RunRecord).where(RunRecord.tenant_id == tenant_id)
    if status is not None:
        stmt = stmt.where(RunRecord.status == status)
    if workflow_name is not None:
        stmt = stmt.where(RunRecord.workflow_name == workflow_name)
    if after is not None:
        at, run_id = after
        stmt = stmt.where(
            or_(
                RunRecord.created_at < at,
                and_(RunRecord.created_at == at, RunRecord.id < run_id),
            )
        )
    stmt = stmt.order_by(RunRecord.created_at.desc(), RunRecord.id.desc()).limit(limit)
    return list((await session.scalars(stmt)).all())


async def list_tasks(*, session: AsyncSession, run_id: str) -> list[TaskRecord]:
    return list(
        (await session.scalars(select(TaskRecord).where(TaskRecord.run_id == run_id))).all()
    )


async def request_cancel(
    *, session: AsyncSession, registry: TopicRegistry, run: RunRecord, reason: str | None
) -> None:
    """Stage the ``run.cancel_requested`` command for the orchestrator, the one writer of run
    and task state: it cancels the run and its open tasks and tells the workers to stop.
    Keyed by run on ``plan.requested``, so it follows the run's plan in order."""
    actor = current_actor()
    command = RunCancelRequested(run_id=run.id, requested_by=actor, reason=reason)
    await stage_event(
        session,
        registry,
        Topic.PLAN_REQUESTED,
        Envelope(command, source=EVENT_SOURCE, tenant_id=run.tenant_id, plan_id=run.id),
    )
    record_audit(
        session=session,
        tenant_id=run.tenant_id,
        action="run.cancel_requested",
        subject=f"run:{run.id}",
        data={"reason": reason} if reason else None,
    )

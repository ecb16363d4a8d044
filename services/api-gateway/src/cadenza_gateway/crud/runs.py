"""Data functions for runs; the caller owns the transaction, so a run and the events it
causes (staged in the outbox) commit together or not at all."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cadenza_events import TopicRegistry
from cadenza_runtime.runs import CreatedRun
from cadenza_runtime.runs import create_run as runtime_create_run
from cadenza_runtime.runs import request_cancel as runtime_request_cancel
from cadenza_runtime.runs import request_resume as runtime_request_resume
from cadenza_state import RunRecord, TaskRecord
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from ..auth.principal import current_actor

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
    publisher: str | None = None,
    alone: bool = False,
) -> CreatedRun:
    """Insert a pending run and stage its ``plan.requested`` and ``run.accepted`` events
    (the shared path, ``cadenza_runtime.create_run``), audited as the request's caller;
    ``publisher``: the relay id of this process, which publishes them after the commit.
    A rerun or fork also records its parent, what was asked (``lineage``) and what the
    orchestrator may reuse (``replay``, docs/replay.md).

    Raises IntegrityError at once (the insert is flushed first) when another request took
    the same idempotency key. ``alone``: the caller's transaction holds nothing else (on
    PostgreSQL the run is then ONE statement, with no BEGIN or COMMIT)."""
    return await runtime_create_run(
        session=session,
        registry=registry,
        tenant_id=tenant_id,
        workflow_name=workflow_name,
        workflow_version=workflow_version,
        spec=spec,
        inputs=inputs,
        idempotency_key=idempotency_key,
        actor=current_actor(),
        source=EVENT_SOURCE,
        budget=budget,
        parent_run_id=parent_run_id,
        lineage=lineage,
        replay=replay,
        publisher=publisher,
        alone=alone,
    )


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
    """Stage the ``run.cancel_requested`` command for the orchestrator (the shared
    ``cadenza_runtime.runs.request_cancel``), audited as the request's caller."""
    await runtime_request_cancel(
        session=session,
        registry=registry,
        run=run,
        actor=current_actor(),
        source=EVENT_SOURCE,
        reason=reason,
    )


async def request_resume(
    *,
    session: AsyncSession,
    registry: TopicRegistry,
    run: RunRecord,
    reason: str | None,
    budget: dict[str, Any] | None,
) -> None:
    """Stage the ``run.resume_requested`` command for the orchestrator (the shared
    ``cadenza_runtime.runs.request_resume``), audited as the request's caller."""
    await runtime_request_resume(
        session=session,
        registry=registry,
        run=run,
        actor=current_actor(),
        source=EVENT_SOURCE,
        reason=reason,
        budget=budget,
    )

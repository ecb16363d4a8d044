"""Data functions for workflow versions; the caller owns the transaction."""

from __future__ import annotations

from typing import Any

from cadenza_state import WorkflowRecord
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession


async def insert_next_version(
    *, session: AsyncSession, tenant_id: str, name: str, spec: dict[str, Any]
) -> WorkflowRecord:
    """Add version max+1 of ``name``. Two concurrent writers can pick the same number: the
    unique (tenant_id, name, version) constraint rejects one (IntegrityError), which the
    caller retries in a fresh transaction."""
    latest = await session.scalar(
        select(func.max(WorkflowRecord.version)).where(
            WorkflowRecord.tenant_id == tenant_id, WorkflowRecord.name == name
        )
    )
    record = WorkflowRecord(tenant_id=tenant_id, name=name, version=(latest or 0) + 1, spec=spec)
    session.add(record)
    await session.flush()
    return record


async def get_workflow(
    *, session: AsyncSession, tenant_id: str, name: str, version: int | None = None
) -> WorkflowRecord | None:
    """One version of ``name``; the latest when ``version`` is None."""
    stmt = select(WorkflowRecord).where(
        WorkflowRecord.tenant_id == tenant_id, WorkflowRecord.name == name
    )
    if version is None:
        stmt = stmt.order_by(WorkflowRecord.version.desc()).limit(1)
    else:
        stmt = stmt.where(WorkflowRecord.version == version)
    return await session.scalar(stmt)


async def list_latest_workflows(
    *, session: AsyncSession, tenant_id: str, after_name: str | None, limit: int
) -> list[WorkflowRecord]:
    """The latest version of each workflow name, by name, starting after ``after_name``."""
    latest = (
        select(WorkflowRecord.name, func.max(WorkflowRecord.version).label("version"))
        .where(WorkflowRecord.tenant_id == tenant_id)
        .group_by(WorkflowRecord.name)
        .subquery()
    )
    stmt = (
        select(WorkflowRecord)
        .join(
            latest,
            (WorkflowRecord.name == latest.c.name) & (WorkflowRecord.version == latest.c.version),
        )
        .where(WorkflowRecord.tenant_id == tenant_id)
        .order_by(WorkflowRecord.name)
        .limit(limit)
    )
    if after_name is not None:
        stmt = stmt.where(WorkflowRecord.name > after_name)
    return list((await session.scalars(stmt)).all())


async def list_workflow_versions(
    *, session: AsyncSession, tenant_id: str, name: str
) -> list[WorkflowRecord]:
    """Every version of ``name``, newest first."""
    stmt = (
        select(WorkflowRecord)
        .where(WorkflowRecord.tenant_id == tenant_id, WorkflowRecord.name == name)
        .order_by(WorkflowRecord.version.desc())
    )
    return list((await session.scalars(stmt)).all())

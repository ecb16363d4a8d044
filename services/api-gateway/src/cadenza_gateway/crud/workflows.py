"""Data functions for workflow versions; the caller owns the transaction."""

from __future__ import annotations

from typing import Any

from cadenza_state import WorkflowRecord
from sqlalchemy.ext.asyncio import AsyncSession

from . import versions


async def insert_next_version(
    *, session: AsyncSession, tenant_id: str, name: str, spec: dict[str, Any]
) -> WorkflowRecord:
    """Add version max+1 of ``name`` (IntegrityError when a concurrent writer took it)."""
    return await versions.insert_next(
        WorkflowRecord, session=session, tenant_id=tenant_id, name=name, spec=spec
    )


async def get_workflow(
    *, session: AsyncSession, tenant_id: str, name: str, version: int | None = None
) -> WorkflowRecord | None:
    """One version of ``name``; the latest when ``version`` is None."""
    return await versions.get_version(
        WorkflowRecord, session=session, tenant_id=tenant_id, name=name, version=version
    )


async def list_latest_workflows(
    *, session: AsyncSession, tenant_id: str, after_name: str | None, limit: int
) -> list[WorkflowRecord]:
    """The latest version of each workflow name, by name, starting after ``after_name``."""
    return await versions.list_latest(
        WorkflowRecord, session=session, tenant_id=tenant_id, after_name=after_name, limit=limit
    )


async def list_workflow_versions(
    *, session: AsyncSession, tenant_id: str, name: str
) -> list[WorkflowRecord]:
    """Every version of ``name``, newest first."""
    return await versions.list_versions(
        WorkflowRecord, session=session, tenant_id=tenant_id, name=name
    )

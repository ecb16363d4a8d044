"""Immutable, numbered versions of named documents (workflows, agents, triggers): one set of queries
for every table with (tenant_id, name, version, spec) and a unique (tenant_id, name,
version); the caller owns the transaction."""

from __future__ import annotations

from typing import Any, TypeVar

from cadenza_state import AgentRecord, TriggerRecord, WorkflowRecord
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

V = TypeVar("V", WorkflowRecord, AgentRecord, TriggerRecord)


async def insert_next(
    model: type[V], *, session: AsyncSession, tenant_id: str, name: str, spec: dict[str, Any]
) -> V:
    """Add version max+1 of ``name``. Two concurrent writers can pick the same number: the
    unique (tenant_id, name, version) constraint rejects one (IntegrityError), which the
    caller retries in a fresh transaction."""
    latest = await session.scalar(
        select(func.max(model.version)).where(model.tenant_id == tenant_id, model.name == name)
    )
    record = model(tenant_id=tenant_id, name=name, version=(latest or 0) + 1, spec=spec)
    session.add(record)
    await session.flush()
    return record


async def get_version(
    model: type[V],
    *,
    session: AsyncSession,
    tenant_id: str,
    name: str,
    version: int | None = None,
) -> V | None:
    """One version of ``name``; the latest when ``version`` is None."""
    stmt = select(model).where(model.tenant_id == tenant_id, model.name == name)
    if version is None:
        stmt = stmt.order_by(model.version.desc()).limit(1)
    else:
        stmt = stmt.where(model.version == version)
    return await session.scalar(stmt)


async def list_latest(
    model: type[V], *, session: AsyncSession, tenant_id: str, after_name: str | None, limit: int
) -> list[V]:
    """The latest version of each name, by name, starting after ``after_name``."""
    latest = (
        select(model.name, func.max(model.version).label("version"))
        .where(model.tenant_id == tenant_id)
        .group_by(model.name)
        .subquery()
    )
    stmt = (
        select(model)
        .join(latest, (model.name == latest.c.name) & (model.version == latest.c.version))
        .where(model.tenant_id == tenant_id)
        .order_by(model.name)
        .limit(limit)
    )
    if after_name is not None:
        stmt = stmt.where(model.name > after_name)
    return list((await session.scalars(stmt)).all())


async def list_versions(
    model: type[V], *, session: AsyncSession, tenant_id: str, name: str
) -> list[V]:
    """Every version of ``name``, newest first."""
    stmt = (
        select(model)
        .where(model.tenant_id == tenant_id, model.name == name)
        .order_by(model.version.desc())
    )
    return list((await session.scalars(stmt)).all())

"""Data functions for agent versions; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from cadenza_state import AgentRecord
from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession


async def insert_next_agent_version(
    *, session: AsyncSession, tenant_id: str, name: str, spec: dict[str, Any]
) -> AgentRecord:
    """Add version max+1 of agent ``name``. Concurrent writers may pick the same number:
    the unique (tenant_id, name, version) constraint rejects one (IntegrityError), which the
    caller retries in a fresh transaction."""
    latest = await session.scalar(
        select(func.max(AgentRecord.version)).where(
            AgentRecord.tenant_id == tenant_id, AgentRecord.name == name
        )
    )
    record = AgentRecord(tenant_id=tenant_id, name=name, version=(latest or 0) + 1, spec=spec)
    session.add(record)
    await session.flush()
    return record


async def get_agent(
    *, session: AsyncSession, tenant_id: str, name: str, version: int | None = None
) -> AgentRecord | None:
    """One version of agent ``name``; the latest when ``version`` is None."""
    stmt = select(AgentRecord).where(AgentRecord.tenant_id == tenant_id, AgentRecord.name == name)
    if version is None:
        stmt = stmt.order_by(AgentRecord.version.desc()).limit(1)
    else:
        stmt = stmt.where(AgentRecord.version == version)
    return await session.scalar(stmt)


async def list_latest_agents(
    *, session: AsyncSession, tenant_id: str, after_name: str | None, limit: int
) -> list[AgentRecord]:
    """The latest version of each agent name, by name, starting after ``after_name``."""
    latest = (
        select(AgentRecord.name, func.max(AgentRecord.version).label("version"))
        .where(AgentRecord.tenant_id == tenant_id)
        .group_by(AgentRecord.name)
        .subquery()
    )
    stmt = (
        select(AgentRecord)
        .join(
            latest, (AgentRecord.name == latest.c.name) & (AgentRecord.version == latest.c.version)
        )
        .where(AgentRecord.tenant_id == tenant_id)
        .order_by(AgentRecord.name)
        .limit(limit)
    )
    if after_name is not None:
        stmt = stmt.where(AgentRecord.name > after_name)
    return list((await session.scalars(stmt)).all())


async def list_agent_versions(
    *, session: AsyncSession, tenant_id: str, name: str
) -> list[AgentRecord]:
    """Every version of agent ``name``, newest first."""
    stmt = (
        select(AgentRecord)
        .where(AgentRecord.tenant_id == tenant_id, AgentRecord.name == name)
        .order_by(AgentRecord.version.desc())
    )
    return list((await session.scalars(stmt)).all())


async def latest_agent_versions(
    *, session: AsyncSession, tenant_id: str, names: Collection[str]
) -> dict[str, int]:
    """name → latest version, for those of ``names`` that are registered."""
    if not names:
        return {}
    stmt = (
        select(AgentRecord.name, func.max(AgentRecord.version))
        .where(AgentRecord.tenant_id == tenant_id, AgentRecord.name.in_(sorted(names)))
        .group_by(AgentRecord.name)
    )
    return {name: int(version) for name, version in (await session.execute(stmt)).all()}


async def get_agent_versions(
    *, session: AsyncSession, tenant_id: str, refs: Collection[tuple[str, int]]
) -> dict[tuple[str, int], AgentRecord]:
    """The registered ones of ``refs`` ((name, version) pairs), keyed by pair."""
    if not refs:
        return {}
    stmt = select(AgentRecord).where(
        AgentRecord.tenant_id == tenant_id,
        tuple_(AgentRecord.name, AgentRecord.version).in_(sorted(refs)),
    )
    return {(r.name, r.version): r for r in (await session.scalars(stmt)).all()}

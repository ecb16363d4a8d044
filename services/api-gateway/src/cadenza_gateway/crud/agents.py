"""Data functions for agent versions; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from cadenza_state import AgentRecord
from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from . import versions


async def insert_next_agent_version(
    *, session: AsyncSession, tenant_id: str, name: str, spec: dict[str, Any]
) -> AgentRecord:
    """Add version max+1 of agent ``name`` (IntegrityError when a concurrent writer took it)."""
    return await versions.insert_next(
        AgentRecord, session=session, tenant_id=tenant_id, name=name, spec=spec
    )


async def get_agent(
    *, session: AsyncSession, tenant_id: str, name: str, version: int | None = None
) -> AgentRecord | None:
    """One version of agent ``name``; the latest when ``version`` is None."""
    return await versions.get_version(
        AgentRecord, session=session, tenant_id=tenant_id, name=name, version=version
    )


async def list_latest_agents(
    *, session: AsyncSession, tenant_id: str, after_name: str | None, limit: int
) -> list[AgentRecord]:
    """The latest version of each agent name, by name, starting after ``after_name``."""
    return await versions.list_latest(
        AgentRecord, session=session, tenant_id=tenant_id, after_name=after_name, limit=limit
    )


async def list_agent_versions(
    *, session: AsyncSession, tenant_id: str, name: str
) -> list[AgentRecord]:
    """Every version of agent ``name``, newest first."""
    return await versions.list_versions(
        AgentRecord, session=session, tenant_id=tenant_id, name=name
    )


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

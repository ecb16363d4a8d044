"""Data functions for agent versions; the caller owns the transaction."""

from __future__ import annotations

from typing import Any

from cadenza_runtime.agent_pins import get_agent_versions, latest_agent_versions
from cadenza_state import AgentRecord
from sqlalchemy.ext.asyncio import AsyncSession

from . import versions

__all__ = [
    "get_agent",
    "get_agent_versions",
    "insert_next_agent_version",
    "latest_agent_versions",
    "list_agent_versions",
    "list_latest_agents",
]


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

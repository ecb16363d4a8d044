"""Agent definitions as the worker sees them: pinned versions read from the `agents` table.

Versions are immutable, so a loaded definition is cached for the life of the process.
"""

from __future__ import annotations

from cadenza_events import NonRetryableError
from cadenza_state import AgentRecord
from cadenza_workflow import AgentSpec, parse_agent_ref
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class UnknownAgentError(NonRetryableError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="unknown_agent")


def split_ref(ref: str) -> tuple[str, int | None]:
    """``"name@3"`` → ``("name", 3)``; ``"name"`` → ``("name", None)`` (latest)."""
    try:
        return parse_agent_ref(ref)
    except ValueError as exc:
        raise UnknownAgentError(str(exc)) from exc


class AgentDefinitions:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], cache_size: int = 256) -> None:
        self._sessions = sessions
        self._cache: dict[tuple[str, str, int], AgentSpec] = {}
        self._cache_size = cache_size

    async def load(self, tenant_id: str, ref: str) -> tuple[AgentSpec, int]:
        """The definition ``ref`` (``name@version``; a bare name means the latest) and its
        version."""
        name, version = split_ref(ref)
        if version is not None and (cached := self._cache.get((tenant_id, name, version))):
            return cached, version
        query = select(AgentRecord).where(
            AgentRecord.tenant_id == tenant_id, AgentRecord.name == name
        )
        if version is None:
            query = query.order_by(AgentRecord.version.desc()).limit(1)
        else:
            query = query.where(AgentRecord.version == version)
        async with self._sessions() as session:
            record = (await session.execute(query)).scalar_one_or_none()
        if record is None:
            what = f"{name}@{version}" if version is not None else name
            raise UnknownAgentError(f"no agent {what!r} for tenant {tenant_id!r}")
        spec = AgentSpec.model_validate(record.spec)
        if len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[(tenant_id, name, record.version)] = spec
        return spec, record.version

"""The answer for a run id the tenant cannot read: 410 Gone when run history retention
deleted it (its tombstone in ``deleted_runs`` says when and why), else 404."""

from __future__ import annotations

from datetime import datetime

from cadenza_state import DeletedRunRecord
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..problems import ProblemError, RunDeleted, RunNotFound


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


async def missing_run(session: AsyncSession, tenant_id: str, run_id: str) -> ProblemError:
    """The problem to raise for ``run_id``; another tenant's tombstone is a plain 404."""
    tombstone = await session.scalar(
        select(DeletedRunRecord).where(
            DeletedRunRecord.id == run_id, DeletedRunRecord.tenant_id == tenant_id
        )
    )
    if tombstone is None:
        return RunNotFound(f"no run {run_id!r}")
    deleted_at, finished_at = _iso(tombstone.deleted_at), _iso(tombstone.finished_at)
    return RunDeleted(
        f"run {run_id!r} finished at {finished_at} and was deleted by {tombstone.reason} at "
        f"{deleted_at}",
        run_id=run_id,
        deleted_at=deleted_at,
        finished_at=finished_at,
        reason=tombstone.reason,
    )

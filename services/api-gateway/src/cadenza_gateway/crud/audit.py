"""The audit trail: who did what to which subject, in the caller's transaction."""

from __future__ import annotations

from typing import Any

from cadenza_state import AuditLogEntry
from sqlalchemy.ext.asyncio import AsyncSession

from ..auth.principal import current_actor


def record_audit(
    *,
    session: AsyncSession,
    tenant_id: str,
    action: str,
    subject: str,
    data: dict[str, Any] | None = None,
    actor: str | None = None,
) -> None:
    """Stage an audit entry; ``actor`` defaults to the request's credential (``key:<id>``,
    ``jwt:<sub>``, or ``anonymous`` in dev mode)."""
    session.add(
        AuditLogEntry(
            tenant_id=tenant_id,
            actor=actor or current_actor(),
            action=action,
            subject=subject,
            data=data,
        )
    )

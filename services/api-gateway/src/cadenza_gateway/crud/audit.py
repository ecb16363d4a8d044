"""The audit trail: who did what to which subject, in the caller's transaction."""

from __future__ import annotations

from typing import Any

from cadenza_state import AuditLogEntry
from sqlalchemy.ext.asyncio import AsyncSession

# Until API keys exist every caller is anonymous; the tenant comes from X-Tenant-Id.
ANONYMOUS = "anonymous"


def record_audit(
    *,
    session: AsyncSession,
    tenant_id: str,
    action: str,
    subject: str,
    data: dict[str, Any] | None = None,
    actor: str = ANONYMOUS,
) -> None:
    session.add(
        AuditLogEntry(tenant_id=tenant_id, actor=actor, action=action, subject=subject, data=data)
    )

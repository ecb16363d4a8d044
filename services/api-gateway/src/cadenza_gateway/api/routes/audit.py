"""/v1/audit: the tenant's audit trail (who did what to which subject), for its admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from cadenza_state import AuditLogEntry
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from ...auth import AdminPrincipal
from ...problems import FieldProblem, InvalidCursor, problem_responses
from ...query_types import INTEGER_TEXT
from ..deps import SessionDep

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=problem_responses(401, 403, 422))


class AuditEntryPublic(BaseModel):
    id: int = Field(description="Increasing id (newest has the largest).")
    actor: str = Field(description="The credential: `key:<id>`, `jwt:<sub>`, `anonymous`…")
    action: str = Field(description="e.g. `run.created`, `api_key.revoked`.")
    subject: str = Field(description="What was acted on, e.g. `run:<id>`.")
    data: dict[str, Any] | None = None
    created_at: datetime


class AuditEntriesPublic(BaseModel):
    items: list[AuditEntryPublic]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for older entries; null on the last page."
    )


@router.get(
    "",
    response_model=AuditEntriesPublic,
    summary="The tenant's audit log, newest first",
    responses=problem_responses(400),
)
async def list_audit(
    session: SessionDep,
    principal: AdminPrincipal,
    limit: Annotated[int, Query(ge=1, le=100), INTEGER_TEXT] = 50,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    action: Annotated[str | None, Query(max_length=255, description="Only this action.")] = None,
) -> AuditEntriesPublic:
    query = select(AuditLogEntry).where(AuditLogEntry.tenant_id == principal.tenant)
    if cursor is not None:
        if not cursor.isdigit():
            raise InvalidCursor(
                "invalid cursor",
                errors=[FieldProblem(field="query.cursor", code="invalid_field", message="")],
            )
        query = query.where(AuditLogEntry.id < int(cursor))
    if action is not None:
        query = query.where(AuditLogEntry.action == action)
    rows = (
        (await session.execute(query.order_by(AuditLogEntry.id.desc()).limit(limit + 1)))
        .scalars()
        .all()
    )
    page = rows[:limit]
    return AuditEntriesPublic(
        items=[
            AuditEntryPublic(
                id=r.id,
                actor=r.actor,
                action=r.action,
                subject=r.subject,
                data=r.data,
                created_at=r.created_at,
            )
            for r in page
        ],
        next_cursor=str(page[-1].id) if len(rows) > limit else None,
    )

"""/v1/usage: the tenant's LLM tokens, cost and tool calls, per agent and per model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from ...auth import CanReadUsage
from ...crud import usage as usage_crud
from ...problems import FieldProblem, InvalidRequest, problem_responses
from ...query_types import DATE_TIME_TEXT
from ...usage import TenantUsage
from ..deps import SessionDep
from .budgets import budget_statuses

router = APIRouter(prefix="/v1/usage", tags=["usage"], responses=problem_responses(422))


def _utc(at: datetime | None) -> datetime | None:
    """Times without a zone are read as UTC (what the database stores)."""
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@router.get(
    "",
    response_model=TenantUsage,
    summary="The tenant's usage per agent and model",
    responses=problem_responses(422),
)
async def get_usage(
    session: SessionDep,
    tenant: CanReadUsage,
    since: Annotated[
        datetime | None,
        Query(description="Only calls recorded at or after this time (ISO 8601)."),
        DATE_TIME_TEXT,
    ] = None,
    until: Annotated[
        datetime | None,
        Query(description="Only calls recorded before this time (ISO 8601)."),
        DATE_TIME_TEXT,
    ] = None,
) -> TenantUsage:
    """Every recorded LLM turn and tool call of the tenant's runs in [since, until)."""
    start, end = _utc(since), _utc(until)
    if start is not None and end is not None and end <= start:
        message = "field query.until: must be later than query.since"
        raise InvalidRequest(
            message,
            errors=[FieldProblem(field="query.until", code="invalid_field", message=message)],
        )
    async with session.begin():
        usage = await usage_crud.tenant_usage(
            session=session, tenant_id=tenant, since=start, until=end
        )
        by_workflow = await usage_crud.workflow_usage(
            session=session, tenant_id=tenant, since=start, until=end
        )
        budgets = await budget_statuses(session, tenant)
    return TenantUsage(
        **usage.model_dump(), since=start, until=end, by_workflow=by_workflow, budgets=budgets
    )

"""/v1/usage: the tenant's LLM tokens, cost and tool calls, per agent and per model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from ...auth import CanReadUsage
from ...crud import usage as usage_crud
from ...models import run_budget
from ...problems import FieldProblem, InvalidRequest, problem_responses
from ...query_types import DATE_TIME_TEXT, INTEGER_TEXT
from ...usage import ModelUsage, RunSpend, RunsUsage, TenantUsage
from ..deps import SessionDep
from .budgets import budget_statuses

SinceQuery = Annotated[
    datetime | None,
    Query(description="Only calls recorded at or after this time (ISO 8601)."),
    DATE_TIME_TEXT,
]
UntilQuery = Annotated[
    datetime | None,
    Query(description="Only calls recorded before this time (ISO 8601)."),
    DATE_TIME_TEXT,
]
router = APIRouter(prefix="/v1/usage", tags=["usage"], responses=problem_responses(422))


def _utc(at: datetime | None) -> datetime | None:
    """Times without a zone are read as UTC (what the database stores)."""
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _window(
    since: datetime | None, until: datetime | None
) -> tuple[datetime | None, datetime | None]:
    start, end = _utc(since), _utc(until)
    if start is not None and end is not None and end <= start:
        message = "field query.until: must be later than query.since"
        raise InvalidRequest(
            message,
            errors=[FieldProblem(field="query.until", code="invalid_field", message=message)],
        )
    return start, end


@router.get(
    "",
    response_model=TenantUsage,
    summary="The tenant's usage per agent and model",
    responses=problem_responses(422),
)
async def get_usage(
    session: SessionDep,
    tenant: CanReadUsage,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> TenantUsage:
    """Every recorded LLM turn and tool call of the tenant's runs in [since, until)."""
    start, end = _window(since, until)
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


@router.get(
    "/runs",
    response_model=RunsUsage,
    summary="The runs that spent the most",
    responses=problem_responses(422),
)
async def get_usage_by_run(
    session: SessionDep,
    tenant: CanReadUsage,
    since: SinceQuery = None,
    until: UntilQuery = None,
    workflow: Annotated[
        str | None, Query(max_length=255, description="Only runs of this workflow.")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=500, description="How many runs (1-500)."), INTEGER_TEXT
    ] = 50,
) -> RunsUsage:
    """LLM spend per run in [since, until): the ``limit`` most expensive runs (then most
    tokens), each with the limit it ran under. Per-run spend is served here and by
    ``GET /v1/runs/{id}``, not as a metric label (one series per run would grow without
    bound: docs/observability.md)."""
    start, end = _window(since, until)
    async with session.begin():
        rows = await usage_crud.top_runs(
            session=session,
            tenant_id=tenant,
            since=start,
            until=end,
            workflow=workflow,
            limit=limit,
        )
    items = []
    for run, row in rows:
        spent = ModelUsage()
        spent.add_llm(row)
        budget = run_budget(run)
        items.append(
            RunSpend(
                **spent.model_dump(),
                run_id=run.id,
                workflow_name=run.workflow_name,
                status=run.status,
                created_at=run.created_at,
                max_tokens=budget.max_tokens if budget else None,
                max_usd=budget.max_usd if budget else None,
            )
        )
    return RunsUsage(since=start, until=end, items=items)

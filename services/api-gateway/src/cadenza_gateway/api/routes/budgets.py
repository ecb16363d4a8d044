"""/v1/budgets: the tenant's token and USD limits per UTC day and month, with what was
spent so far (``llm_calls``). Workers read them within a few seconds of a change and
reserve every LLM call against them (docs/guardrails.md). Scope ``admin``; the tenant is
the credential's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from cadenza_state import TenantBudgetRecord, llm_spend
from cadenza_workflow import Budget
from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ... import crud
from ...auth import AdminPrincipal
from ...problems import ProblemError, problem_responses
from ...usage import BudgetStatus
from ..deps import SessionDep, require_json

router = APIRouter(
    prefix="/v1/budgets", tags=["budgets"], responses=problem_responses(401, 403, 422)
)

Period = Literal["day", "month"]
PeriodPath = Annotated[Period, Path(description="`day` (UTC calendar day) or `month`.")]


class TenantBudget(BaseModel):
    """A limit for one period and the spend of the current period against it."""

    period: Period
    max_tokens: int | None = Field(description="Token limit; null = none.")
    max_usd: float | None = Field(description="USD limit; null = none.")
    on_exceeded: str = Field(
        description="stop (runs end budget_exceeded) or pause (runs pause until resumed)."
    )
    spent_tokens: int = Field(description="Tokens used in the current period so far.")
    spent_usd: float = Field(description="USD spent in the current period so far.")
    period_start: datetime = Field(description="Start of the current period (UTC).")
    updated_at: datetime


class TenantBudgets(BaseModel):
    items: list[TenantBudget]


class BudgetNotFound(ProblemError):
    status, slug, title = 404, "budget-not-found", "Budget not found"


def period_start(period: str, now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == "day" else day.replace(day=1)


async def _public(session: AsyncSession, record: TenantBudgetRecord) -> TenantBudget:
    start = period_start(record.period)
    tokens, usd = await llm_spend(session, tenant_id=record.tenant_id, since=start)
    return TenantBudget(
        period="day" if record.period == "day" else "month",
        max_tokens=record.max_tokens,
        max_usd=record.max_usd,
        on_exceeded=record.on_exceeded,
        spent_tokens=tokens,
        spent_usd=usd,
        period_start=start,
        updated_at=record.updated_at,
    )


async def budget_statuses(session: AsyncSession, tenant_id: str) -> list[BudgetStatus]:
    """The tenant's budgets against their current period's spend (for /v1/usage)."""
    query = select(TenantBudgetRecord).where(TenantBudgetRecord.tenant_id == tenant_id)
    out = []
    for record in (await session.execute(query.order_by(TenantBudgetRecord.period))).scalars():
        public = await _public(session, record)
        out.append(BudgetStatus(**public.model_dump(exclude={"on_exceeded", "updated_at"})))
    return out


@router.put(
    "/{period}",
    response_model=TenantBudget,
    summary="Set the tenant's budget for a day or a month",
    dependencies=[Depends(require_json)],
)
async def put_budget(
    period: PeriodPath, body: Budget, session: SessionDep, principal: AdminPrincipal
) -> TenantBudget:
    """Raising a limit lets refused calls through again within seconds; lowering it stops
    new calls that no longer fit (calls in flight finish)."""
    async with session.begin():
        record = await session.get(TenantBudgetRecord, (principal.tenant, period))
        if record is None:
            record = TenantBudgetRecord(tenant_id=principal.tenant, period=period)
            session.add(record)
        record.max_tokens = body.max_tokens
        record.max_usd = body.max_usd
        record.on_exceeded = body.on_exceeded
        record.updated_by = principal.subject
        crud.record_audit(
            session=session,
            tenant_id=principal.tenant,
            action="budget.set",
            subject=f"budget:{period}",
            data=body.model_dump(),
        )
        await session.flush()
        await session.refresh(record)
        return await _public(session, record)


@router.get("", response_model=TenantBudgets, summary="The tenant's budgets and spend")
async def list_budgets(session: SessionDep, principal: AdminPrincipal) -> TenantBudgets:
    async with session.begin():
        query = select(TenantBudgetRecord).where(TenantBudgetRecord.tenant_id == principal.tenant)
        records = list((await session.execute(query.order_by(TenantBudgetRecord.period))).scalars())
        return TenantBudgets(items=[await _public(session, r) for r in records])


@router.delete(
    "/{period}", status_code=204, summary="Remove a budget", responses=problem_responses(404)
)
async def delete_budget(
    period: PeriodPath, session: SessionDep, principal: AdminPrincipal
) -> Response:
    async with session.begin():
        gone = await session.execute(
            delete(TenantBudgetRecord).where(
                TenantBudgetRecord.tenant_id == principal.tenant,
                TenantBudgetRecord.period == period,
            )
        )
        if not gone.rowcount:  # type: ignore[attr-defined]
            raise BudgetNotFound(f"no {period} budget is set")
        crud.record_audit(
            session=session,
            tenant_id=principal.tenant,
            action="budget.delete",
            subject=f"budget:{period}",
            data={},
        )
    return Response(status_code=204)

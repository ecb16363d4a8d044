"""Usage queries: ``llm_calls`` and ``tool_calls`` grouped in the database, so a run with
thousands of turns costs one small result set, not thousands of rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cadenza_state import LLMCallRecord, RunRecord, ToolCallRecord
from sqlalchemy import Integer, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..usage import LLMUsageRow, ModelUsage, RunUsage, ToolUsageRow, UsageRollup, roll_up

TOOL_OK = "ok"


def _scope(
    model: type[LLMCallRecord] | type[ToolCallRecord],
    keys: list[Any],
    *,
    tenant_id: str,
    run_id: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[Any], list[Any]]:
    """Group-by keys and filters: one run per task (``run_id`` given), else the tenant's
    rows in [since, until)."""
    where: list[Any] = [model.tenant_id == tenant_id]
    if run_id is not None:
        keys = [model.task_id, *keys]
        where.append(model.run_id == run_id)
    if since is not None:
        where.append(model.created_at >= since)
    if until is not None:
        where.append(model.created_at < until)
    return keys, where


async def llm_usage(
    *,
    session: AsyncSession,
    tenant_id: str,
    run_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[LLMUsageRow]:
    """LLM turns of one run grouped by task, agent and model (``run_id`` given), else of
    the whole tenant in [since, until) grouped by agent and model."""
    keys, where = _scope(
        LLMCallRecord,
        [LLMCallRecord.agent, LLMCallRecord.provider, LLMCallRecord.model],
        tenant_id=tenant_id,
        run_id=run_id,
        since=since,
        until=until,
    )
    stmt = (
        select(
            *keys,
            func.count(),
            func.coalesce(func.sum(LLMCallRecord.input_tokens), 0),
            func.coalesce(func.sum(LLMCallRecord.output_tokens), 0),
            func.coalesce(func.sum(LLMCallRecord.cost_usd), 0.0),
        )
        .where(*where)
        .group_by(*keys)
    )
    rows = []
    for row in (await session.execute(stmt)).all():
        task_id = row[0] if run_id is not None else None
        agent, provider, model, calls, tokens_in, tokens_out, cost = tuple(row)[-7:]
        rows.append(
            LLMUsageRow(
                task_id=task_id,
                agent=agent,
                provider=provider,
                model=model,
                calls=int(calls),
                input_tokens=int(tokens_in),
                output_tokens=int(tokens_out),
                cost_usd=float(cost),
            )
        )
    return rows


async def tool_usage(
    *,
    session: AsyncSession,
    tenant_id: str,
    run_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[ToolUsageRow]:
    """Tool calls of one run grouped by task and agent (``run_id`` given), else of the
    whole tenant in [since, until) grouped by agent."""
    keys, where = _scope(
        ToolCallRecord,
        [ToolCallRecord.agent],
        tenant_id=tenant_id,
        run_id=run_id,
        since=since,
        until=until,
    )
    failed = case((ToolCallRecord.status != TOOL_OK, 1), else_=0)
    stmt = (
        select(*keys, func.count(), func.coalesce(func.sum(failed), 0).cast(Integer))
        .where(*where)
        .group_by(*keys)
    )
    rows = []
    for row in (await session.execute(stmt)).all():
        task_id = row[0] if run_id is not None else None
        agent, calls, errors = tuple(row)[-3:]
        rows.append(
            ToolUsageRow(task_id=task_id, agent=agent, calls=int(calls), errors=int(errors))
        )
    return rows


async def run_usage(*, session: AsyncSession, tenant_id: str, run_id: str) -> UsageRollup:
    """One run's usage: per task instance, per agent, per model and in total."""
    llm = await llm_usage(session=session, tenant_id=tenant_id, run_id=run_id)
    tools = await tool_usage(session=session, tenant_id=tenant_id, run_id=run_id)
    return roll_up(llm, tools)


async def tenant_usage(
    *, session: AsyncSession, tenant_id: str, since: datetime | None, until: datetime | None
) -> RunUsage:
    """The tenant's usage in [since, until): per agent, per model and in total."""
    llm = await llm_usage(session=session, tenant_id=tenant_id, since=since, until=until)
    tools = await tool_usage(session=session, tenant_id=tenant_id, since=since, until=until)
    return roll_up(llm, tools).usage


async def workflow_usage(
    *, session: AsyncSession, tenant_id: str, since: datetime | None, until: datetime | None
) -> dict[str, ModelUsage]:
    """The tenant's LLM turns in [since, until) per workflow name."""
    c = LLMCallRecord
    _, where = _scope(c, [], tenant_id=tenant_id, run_id=None, since=since, until=until)
    stmt = (
        select(
            RunRecord.workflow_name,
            func.count(),
            func.coalesce(func.sum(c.input_tokens), 0),
            func.coalesce(func.sum(c.output_tokens), 0),
            func.coalesce(func.sum(c.cost_usd), 0.0),
        )
        .join(RunRecord, RunRecord.id == c.run_id)
        .where(*where)
        .group_by(RunRecord.workflow_name)
    )
    out: dict[str, ModelUsage] = {}
    for name, calls, tokens_in, tokens_out, cost in (await session.execute(stmt)).all():
        usage = ModelUsage()
        usage.add_llm(
            LLMUsageRow(None, "", "", "", int(calls), int(tokens_in), int(tokens_out), float(cost))
        )
        out[name] = usage
    return out


async def top_runs(
    *,
    session: AsyncSession,
    tenant_id: str,
    since: datetime | None,
    until: datetime | None,
    workflow: str | None,
    limit: int,
) -> list[tuple[RunRecord, LLMUsageRow]]:
    """The tenant's runs by LLM spend in [since, until), most expensive first (then most
    tokens, then run id): grouped in the database, ``limit`` rows back."""
    c = LLMCallRecord
    _, where = _scope(c, [], tenant_id=tenant_id, run_id=None, since=since, until=until)
    if workflow is not None:
        where.append(RunRecord.workflow_name == workflow)
    cost = func.coalesce(func.sum(c.cost_usd), 0.0)
    tokens = func.coalesce(func.sum(c.input_tokens + c.output_tokens), 0)
    grouped = (
        select(
            c.run_id,
            func.count().label("calls"),
            func.coalesce(func.sum(c.input_tokens), 0).label("tokens_in"),
            func.coalesce(func.sum(c.output_tokens), 0).label("tokens_out"),
            cost.label("cost"),
        )
        .join(RunRecord, RunRecord.id == c.run_id)
        .where(*where)
        .group_by(c.run_id)
        .order_by(cost.desc(), tokens.desc(), c.run_id)
        .limit(limit)
    ).subquery()
    stmt = select(RunRecord, grouped).join(grouped, grouped.c.run_id == RunRecord.id)
    out = [
        (
            run,
            LLMUsageRow(None, "", "", "", int(calls), int(t_in), int(t_out), float(spent)),
        )
        for run, _, calls, t_in, t_out, spent in (await session.execute(stmt)).all()
    ]
    out.sort(key=lambda r: (-r[1].cost_usd, -(r[1].input_tokens + r[1].output_tokens), r[0].id))
    return out

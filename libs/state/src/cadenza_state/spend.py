"""What LLM calls spent, from the durable ledger (``llm_calls``): the source budget counters
are seeded from and the usage API reports."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cadenza_state.models import LLMCallRecord


async def llm_spend(
    session: AsyncSession,
    *,
    tenant_id: str | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
    agent: str | None = None,
    since: datetime | None = None,
) -> tuple[int, float]:
    """(input + output tokens, USD) of the calls matching every filter given."""
    c = LLMCallRecord
    query = select(
        func.coalesce(func.sum(c.input_tokens + c.output_tokens), 0),
        func.coalesce(func.sum(c.cost_usd), 0.0),
    )
    for column, value in (
        (c.tenant_id, tenant_id),
        (c.run_id, run_id),
        (c.task_id, task_id),
        (c.agent, agent),
    ):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(c.created_at >= since)
    tokens, usd = (await session.execute(query)).one()
    return int(tokens), round(float(usd), 9)

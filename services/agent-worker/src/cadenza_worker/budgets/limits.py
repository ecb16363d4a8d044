"""Which budgets apply to an agent task, and what each has spent so far (PostgreSQL).

Levels: the agent's own budget (``task``), the run's (the workflow's ``budget`` and the run
request's, the tighter of the two), and the tenant's per UTC day and month. Only levels with
a limit are counted. ``llm_calls`` is the durable ledger the Redis counters are seeded from.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from cadenza_state import RunRecord, TenantBudgetRecord, llm_spend
from cadenza_workflow import AgentBudget, Budget, GuardrailPolicy, TaskApproval, run_budget
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .ledger import Level

DAY_TTL_S = 2 * 86_400
MONTH_TTL_S = 33 * 86_400
RUN_TTL_S = 7 * 86_400


class RunPolicy:
    """The run's budget, guardrail policy and per-task approval rules (cached; only a resume
    that raises the run's limit changes it, and a refused call re-reads it before giving
    up)."""

    def __init__(
        self,
        workflow: str,
        budget: Budget | None,
        guardrails: GuardrailPolicy | None,
        approvals: dict[str, TaskApproval] | None = None,
    ):
        self.workflow = workflow
        self.budget = budget
        self.guardrails = guardrails
        self.approvals = approvals or {}
        """The workflow tasks' own approval rules, by task id (spec node)."""


class BudgetLimits:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, tenant_cache_s: float = 5.0
    ) -> None:
        self._sessions = sessions
        self._tenant_cache_s = tenant_cache_s
        self._runs: dict[str, RunPolicy] = {}
        self._tenants: dict[str, tuple[float, dict[str, TenantBudgetRecord]]] = {}

    def forget(self, run_id: str, tenant_id: str) -> None:
        """Drop what is cached of a run's and a tenant's limits: an operator may have raised
        them (a refused call asks again once with fresh limits before giving up)."""
        self._runs.pop(run_id, None)
        self._tenants.pop(tenant_id, None)

    async def run_policy(self, run_id: str) -> RunPolicy:
        cached = self._runs.get(run_id)
        if cached is not None:
            return cached
        async with self._sessions() as session:
            row = await session.get(RunRecord, run_id)
        spec: dict[str, Any] = (row.spec if row else None) or {}
        policy = RunPolicy(
            row.workflow_name if row else "",
            run_budget(spec.get("budget"), row.budget if row else None),
            _guardrails(spec.get("guardrails")),
            _approvals(spec.get("tasks")),
        )
        if len(self._runs) > 10_000:
            self._runs.clear()
        self._runs[run_id] = policy
        return policy

    async def tenant_budgets(self, tenant_id: str) -> dict[str, TenantBudgetRecord]:
        """Limits set by an admin; cached briefly so a raised limit applies within seconds."""
        now = time.monotonic()
        cached = self._tenants.get(tenant_id)
        if cached is not None and now - cached[0] < self._tenant_cache_s:
            return cached[1]
        async with self._sessions() as session:
            query = select(TenantBudgetRecord).where(TenantBudgetRecord.tenant_id == tenant_id)
            rows = {r.period: r for r in (await session.execute(query)).scalars()}
        self._tenants[tenant_id] = (now, rows)
        return rows

    async def levels(
        self,
        *,
        tenant_id: str,
        run_id: str,
        task_id: str,
        agent: str,
        agent_budget: AgentBudget | None,
        now: datetime | None = None,
    ) -> list[Level]:
        now = now or datetime.now(UTC)
        levels: list[Level] = []
        if agent_budget is not None:
            key = f"budget:task:{task_id}:{agent}"
            levels.append(
                Level("task", key, agent_budget.max_tokens, agent_budget.max_usd, RUN_TTL_S)
            )
        limit_of_run = (await self.run_policy(run_id)).budget
        if limit_of_run is not None:
            levels.append(
                Level(
                    "run",
                    f"budget:run:{run_id}",
                    limit_of_run.max_tokens,
                    limit_of_run.max_usd,
                    RUN_TTL_S,
                    limit_of_run.on_exceeded,
                )
            )
        for period, limit in (await self.tenant_budgets(tenant_id)).items():
            stamp, ttl = (
                (now.strftime("%Y-%m-%d"), DAY_TTL_S)
                if period == "day"
                else (now.strftime("%Y-%m"), MONTH_TTL_S)
            )
            levels.append(
                Level(
                    f"tenant_{period}",
                    f"budget:tenant:{tenant_id}:{period}:{stamp}",
                    limit.max_tokens,
                    limit.max_usd,
                    ttl,
                    limit.on_exceeded,
                )
            )
        return levels

    async def spent(self, level: Level) -> tuple[int, float]:
        """What the ledger (``llm_calls``) says a level has spent: seeds a missing counter."""
        parts = level.key.split(":")
        async with self._sessions() as session:
            if level.scope == "task":
                return await llm_spend(session, task_id=":".join(parts[2:-1]), agent=parts[-1])
            if level.scope == "run":
                return await llm_spend(session, run_id=":".join(parts[2:]))
            tenant, period, stamp = ":".join(parts[2:-2]), parts[-2], parts[-1]
            start = datetime.strptime(stamp + ("-01" if period == "month" else ""), "%Y-%m-%d")
            return await llm_spend(session, tenant_id=tenant, since=start.replace(tzinfo=UTC))


def _approvals(tasks: Any) -> dict[str, TaskApproval]:
    """Each task's ``approval`` (validated when the workflow was registered)."""
    return {
        str(t["id"]): TaskApproval.model_validate(t["approval"])
        for t in tasks or []
        if isinstance(t, dict) and isinstance(t.get("approval"), dict)
    }


def _guardrails(data: Any) -> GuardrailPolicy | None:
    return GuardrailPolicy.model_validate(data) if isinstance(data, dict) and data else None

"""Per-tenant quotas checked before work is accepted: concurrent (unfinished) runs."""

from __future__ import annotations

from typing import Annotated, cast

from cadenza_runtime import Resources
from cadenza_state import RunRecord, RunStatus
from fastapi import Request, Security
from sqlalchemy import func, select

from .deps import get_tenant
from .problems import RateLimited
from .scopes import Scope
from .settings import AuthSettings

ACTIVE = (RunStatus.PENDING.value, RunStatus.RUNNING.value)
RETRY_AFTER_S = 5


class RunQuotaExceeded(RateLimited):
    status, slug, title = 429, "run-quota-exceeded", "Too many active runs"


async def check_run_quota(
    request: Request,
    tenant: Annotated[str, Security(get_tenant, scopes=[Scope.RUNS_WRITE.value])],
) -> None:
    """429 when the tenant already has its maximum of pending + running runs (a replay of
    an existing Idempotency-Key is an answer, not a new run, so it always passes)."""
    await enforce_run_quota(request, tenant, request.headers.get("idempotency-key"))


async def enforce_run_quota(request: Request, tenant: str, idempotency_key: str | None) -> None:
    """429 when ``tenant`` is at its limit of pending + running runs (also for events sent
    to POST /v1/events, which may start runs)."""
    settings = cast(AuthSettings, request.app.state.settings.auth)
    limit = settings.tenant_max_active_runs.get(tenant, settings.max_active_runs)
    if not limit:
        return
    resources = cast(Resources, request.app.state.resources)
    async with resources.sessions() as session:
        if idempotency_key is not None:
            replay = await session.scalar(
                select(RunRecord.id).where(
                    RunRecord.tenant_id == tenant, RunRecord.idempotency_key == idempotency_key
                )
            )
            if replay is not None:
                return
        active = await session.scalar(
            select(func.count())
            .select_from(RunRecord)
            .where(RunRecord.tenant_id == tenant, RunRecord.status.in_(ACTIVE))
        )
    if (active or 0) >= limit:
        raise RunQuotaExceeded(
            f"the tenant has {active} unfinished runs, its limit is {limit}; retry when one "
            "finishes",
            headers={"Retry-After": str(RETRY_AFTER_S)},
            limit=limit,
            active=active,
        )

"""POST /v1/runs/{id}/resume: resume a run a budget paused (``on_exceeded: pause``).

Like a cancel, the gateway only stages a command (``run.resume_requested``, with an audit
row) in one transaction; the orchestrator — the one writer of run and task state — raises
the run's own limit when the request gives one and dispatches the held tasks again. Raise a
tenant limit first with ``PUT /v1/budgets/{period}`` when a tenant budget paused the run."""

from __future__ import annotations

import logging

from cadenza_state import RunStatus
from cadenza_workflow import BudgetRaise
from fastapi import APIRouter, Body
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field

from ... import crud, metrics
from ...auth import CanWriteRuns
from ...models import RunPublic
from ...problems import RunNotPaused, problem_responses
from ..deps import ResourcesDep, SessionDep
from ..missing_runs import missing_run
from .runs import RunIdPath

log = logging.getLogger("cadenza.gateway")
router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=problem_responses(422))


class ResumeRequest(BaseModel):
    """Optional body of a resume."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(
        default=None, max_length=1000, description="Why, for the timeline and the audit log."
    )
    budget: BudgetRaise | None = Field(
        default=None,
        description="New limits for the run itself (they replace its run budget per field, "
        "the workflow's included). Leave out when a tenant budget paused the run: raise that "
        "with PUT /v1/budgets/{period} first.",
    )


@router.post(
    "/{run_id}/resume",
    status_code=202,
    response_model=RunPublic,
    summary="Resume a run paused by a budget",
    responses=problem_responses(404, 410, 409),
)
async def resume_run(
    run_id: RunIdPath,
    session: SessionDep,
    resources: ResourcesDep,
    tenant: CanWriteRuns,
    body: ResumeRequest | None = Body(default=None),
) -> RunPublic:
    """202: resume requested; the run as it stands now. The orchestrator dispatches the held
    tasks again within moments (the run's ``status`` goes back to ``running``); each agent
    resumes from its checkpoint, so no LLM call made before the pause is made again. 409
    when the run is not ``paused``."""
    reason = body.reason if body is not None else None
    raise_to = body.budget if body is not None else None
    budget = raise_to.model_dump(exclude_none=True) if raise_to is not None else None
    async with session.begin():
        run = await crud.get_run(session=session, tenant_id=tenant, run_id=run_id)
        if run is None:
            raise await missing_run(session, tenant, run_id)
        if run.status != RunStatus.PAUSED:
            raise RunNotPaused(
                f"run {run_id} is {run.status!r}, not 'paused': only a run a budget paused "
                "can be resumed",
                run_status=run.status,
            )
        await crud.request_resume(
            session=session,
            registry=resources.registry,
            run=run,
            reason=reason,
            budget=budget or None,
        )
    resources.relay.notify()
    metrics.RUNS_RESUMED.labels(tenant).inc()
    trace.get_current_span().set_attribute("cadenza.run_id", run_id)
    log.info("resume of run %s requested", run_id)
    async with session.begin():
        tasks = await crud.list_tasks(session=session, run_id=run_id)
    return RunPublic.from_run(run, tasks)

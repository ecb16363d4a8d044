"""POST /v1/runs/{id}/cancel: the gateway asks, the orchestrator decides.

The orchestrator is the one writer of run and task state (docs/execution.md), so the gateway
only stages a ``run.cancel_requested`` command (with an audit row) in one transaction. The
orchestrator cancels the run and its open tasks and sets the Redis marker that stops the
workers running its tasks. A repeated cancel of a cancelled run re-sends that marker."""

from __future__ import annotations

import logging

from cadenza_state import TERMINAL_RUN_STATUSES, RunStatus
from fastapi import APIRouter, Body
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field

from ... import crud, metrics
from ...auth import CanWriteRuns
from ...models import RunPublic
from ...problems import RunFinished, problem_responses
from ..deps import ResourcesDep, SessionDep
from ..missing_runs import missing_run
from .runs import RunIdPath

log = logging.getLogger("cadenza.gateway")
router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=problem_responses(422))


class CancelRequest(BaseModel):
    """Optional body of a cancel."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(
        default=None, max_length=1000, description="Why, for the timeline and the audit log."
    )


@router.post(
    "/{run_id}/cancel",
    status_code=202,
    response_model=RunPublic,
    summary="Cancel a run",
    responses=problem_responses(404, 410, 409),
)
async def cancel_run(
    run_id: RunIdPath,
    session: SessionDep,
    resources: ResourcesDep,
    tenant: CanWriteRuns,
    body: CancelRequest | None = Body(default=None),
) -> RunPublic:
    """202: cancel requested; the run as it stands now. The orchestrator applies the cancel
    within moments (poll the run until ``status`` is ``cancelled``); tasks running on a
    worker stop within one worker heartbeat."""
    reason = body.reason if body is not None else None
    async with session.begin():
        run = await crud.get_run(session=session, tenant_id=tenant, run_id=run_id)
        if run is None:
            raise await missing_run(session, tenant, run_id)
        previous = run.status
        if previous not in TERMINAL_RUN_STATUSES or previous == RunStatus.CANCELLED:
            # A cancel of a cancelled run re-sends the workers' stop marker (repairs a lost one).
            await crud.request_cancel(
                session=session, registry=resources.registry, run=run, reason=reason
            )
    resources.relay.notify()
    if previous in TERMINAL_RUN_STATUSES:
        raise RunFinished(
            f"run {run_id} already finished with status {previous!r}", run_status=previous
        )
    metrics.RUNS_CANCELLED.labels(tenant).inc()
    trace.get_current_span().set_attribute("cadenza.run_id", run_id)
    log.info("cancel of run %s requested", run_id)
    async with session.begin():
        tasks = await crud.list_tasks(session=session, run_id=run_id)
    return RunPublic.from_run(run, tasks)

"""POST /v1/runs/{id}/cancel, as docs/execution.md specifies: the run and its not-yet-running
tasks become ``cancelled`` with a ``run.cancelled`` event in one transaction; then the Redis
marker tells workers to stop the tasks already running."""

from __future__ import annotations

import logging

from cadenza_runtime import Resources
from cadenza_runtime.runs import signal_cancelled as runtime_signal_cancelled
from cadenza_state import TERMINAL_RUN_STATUSES, RunStatus
from fastapi import APIRouter
from opentelemetry import trace

from ... import crud, metrics
from ...auth import CanWriteRuns
from ...models import RunPublic
from ...problems import RunFinished, RunNotFound, problem_responses
from ...settings import GatewaySettings
from ..deps import ResourcesDep, SessionDep, SettingsDep
from .runs import RunIdPath

log = logging.getLogger("cadenza.gateway")
router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=problem_responses(422))


async def signal_cancelled(resources: Resources, settings: GatewaySettings, run_id: str) -> bool:
    """Set the marker workers watch and the hot status pollers read; False if Redis failed
    (the run is cancelled in PostgreSQL regardless; cancelling again re-sends the signal)."""
    try:
        await runtime_signal_cancelled(resources.hot, run_id, settings.cancel_marker_ttl_s)
    except Exception:
        metrics.CANCEL_SIGNAL_FAILURES.inc()
        log.exception("run %s is cancelled but its Redis stop marker could not be set", run_id)
        return False
    return True


@router.post(
    "/{run_id}/cancel",
    status_code=202,
    response_model=RunPublic,
    summary="Cancel a run",
    responses=problem_responses(404, 409),
)
async def cancel_run(
    run_id: RunIdPath,
    session: SessionDep,
    resources: ResourcesDep,
    settings: SettingsDep,
    tenant: CanWriteRuns,
) -> RunPublic:
    """202: the run is cancelled; running tasks stop within a worker heartbeat."""
    async with session.begin():
        # Locked so a concurrent orchestrator transition waits for this one (PostgreSQL).
        run = await crud.get_run(session=session, tenant_id=tenant, run_id=run_id, for_update=True)
        if run is None:
            raise RunNotFound(f"no run {run_id!r}")
        previous = run.status
        if previous not in TERMINAL_RUN_STATUSES:
            cancelled_tasks = await crud.cancel_run(
                session=session, registry=resources.registry, run=run
            )
    if previous in TERMINAL_RUN_STATUSES:
        if previous == RunStatus.CANCELLED:
            # Repeated cancel: re-send the stop signal in case the first one was lost.
            await signal_cancelled(resources, settings, run_id)
        raise RunFinished(
            f"run {run_id} already finished with status {previous!r}", run_status=previous
        )
    resources.relay.notify()
    await signal_cancelled(resources, settings, run_id)
    metrics.RUNS_CANCELLED.labels(tenant).inc()
    trace.get_current_span().set_attribute("cadenza.run_id", run_id)
    log.info("run %s cancelled (%d queued tasks cancelled)", run_id, cancelled_tasks)
    async with session.begin():
        tasks = await crud.list_tasks(session=session, run_id=run_id)
    return RunPublic.from_run(run, tasks)

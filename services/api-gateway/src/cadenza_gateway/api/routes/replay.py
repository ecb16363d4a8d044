"""/v1/runs/{id}/rerun, /v1/runs/{id}/fork and /v1/runs/{a}/diff/{b} (docs/replay.md)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from cadenza_runtime import Resources
from cadenza_state import TERMINAL_RUN_STATUSES, RunRecord
from fastapi import APIRouter, Depends, Path, Response
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession

from ... import crud, metrics
from ...auth import CanReadRuns, CanWriteRuns
from ...auth.quotas import check_run_quota
from ...diffs import diff_runs
from ...documents import ensure_fits_in_event
from ...models import RunPublic
from ...problems import RunNotFinished, problem_responses
from ...replay_models import ForkCreate, RerunCreate, RunDiff
from ...replays import ChildRun, plan_fork, plan_rerun
from ...settings import GatewaySettings
from ..deps import ResourcesDep, SessionDep, SettingsDep, require_json
from ..missing_runs import missing_run
from .runs import RunIdPath, run_location

log = logging.getLogger("cadenza.gateway")
router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=problem_responses(422))

OtherRunPath = Annotated[str, Path(max_length=64, description="The run to compare with.")]


async def _finished_parent(session: AsyncSession, tenant: str, run_id: str) -> RunRecord:
    run = await crud.get_run(session=session, tenant_id=tenant, run_id=run_id, with_tasks=True)
    if run is None:
        raise await missing_run(session, tenant, run_id)
    if run.status not in TERMINAL_RUN_STATUSES:
        raise RunNotFinished(
            f"run {run_id!r} is {run.status}; rerun or fork it once it has finished",
            run_id=run_id,
        )
    return run


@dataclass(frozen=True)
class ReplayContext:
    """What starting a rerun or a fork needs besides its body: one dependency, so the two
    routes declare it (and the `runs:write` scope) once."""

    response: Response
    session: AsyncSession
    resources: Resources
    settings: GatewaySettings
    tenant: str


async def _replay_context(
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    settings: SettingsDep,
    tenant: CanWriteRuns,
) -> ReplayContext:
    return ReplayContext(response, session, resources, settings, tenant)


ReplayDep = Annotated[ReplayContext, Depends(_replay_context)]


async def _replay(
    run_id: str, plan: Callable[[RunRecord], Awaitable[ChildRun]], ctx: ReplayContext
) -> RunPublic:
    """Rerun and fork: the finished parent, the child ``plan`` makes of it (in the same
    transaction: a fork reads agent versions), then the child run, started."""
    session, resources, settings, tenant = ctx.session, ctx.resources, ctx.settings, ctx.tenant
    async with session.begin():
        parent = await _finished_parent(session, tenant, run_id)
        child = await plan(parent)
    ensure_fits_in_event(child.spec, child.inputs, settings.max_event_bytes)
    async with session.begin():
        created = await crud.create_run(
            session=session,
            registry=resources.registry,
            tenant_id=tenant,
            workflow_name=parent.workflow_name,
            workflow_version=parent.workflow_version,
            spec=child.spec,
            inputs=child.inputs,
            idempotency_key=None,
            parent_run_id=parent.id,
            lineage=child.lineage,
            replay=child.replay,
            budget=parent.budget,  # the parent's limits hold for its rerun or fork
            publisher=resources.relay.publisher_id,
            alone=True,  # nothing else in this transaction: one statement, no BEGIN
        )
    run = created.run
    resources.relay.publish_soon(created.events)
    kind = str(child.lineage["kind"])
    metrics.RUNS_ACCEPTED.labels(tenant).inc()
    metrics.RUNS_REPLAYED.labels(kind).inc()
    span = trace.get_current_span()
    span.set_attribute("cadenza.run_id", run.id)
    span.set_attribute("cadenza.parent_run_id", parent.id)
    span.set_attribute("cadenza.replay.kind", kind)
    log.info(
        "run %s accepted: %s of run %s (%d task(s) may reuse their output)",
        run.id,
        kind,
        parent.id,
        len(child.replay["reuse"]),
    )
    ctx.response.headers["Location"] = run_location(settings, run.id)
    return RunPublic.from_run(run, [])


@router.post(
    "/{run_id}/rerun",
    status_code=201,
    response_model=RunPublic,
    summary="Rerun a finished run from some tasks, reusing the outputs upstream of them",
    dependencies=[Depends(require_json), Depends(check_run_quota)],
    responses=problem_responses(404, 410, 409, 413, 415, 422, 429),
)
async def rerun(run_id: RunIdPath, body: RerunCreate, ctx: ReplayDep) -> RunPublic:
    """A NEW run of the same pinned workflow version: `from` (default: the failed tasks)
    and everything downstream of them run; every other task completes from the parent's
    recorded output (`task.reused`: no model or tool call)."""
    return await _replay(run_id, lambda parent: plan_rerun(parent, parent.tasks, body), ctx)


@router.post(
    "/{run_id}/fork",
    status_code=201,
    response_model=RunPublic,
    summary="Fork a finished run with overrides, recomputing exactly what they change",
    dependencies=[Depends(require_json), Depends(check_run_quota)],
    responses=problem_responses(404, 410, 409, 413, 415, 422, 429),
)
async def fork(run_id: RunIdPath, body: ForkCreate, ctx: ReplayDep) -> RunPublic:
    """A NEW run with changed inputs, a task's agent version, system prompt or model, or a
    task's output replaced by hand. Tasks whose cache key is unchanged reuse the parent's
    output; the others — exactly the dependants of what changed — run."""
    return await _replay(
        run_id,
        lambda parent: plan_fork(
            parent, parent.tasks, body, session=ctx.session, tenant_id=ctx.tenant
        ),
        ctx,
    )


@router.get(
    "/{run_id}/diff/{other_id}",
    response_model=RunDiff,
    summary="Compare two runs: inputs, outputs and, per task, outputs and calls",
    responses=problem_responses(404, 410),
)
async def diff(
    run_id: RunIdPath,
    other_id: OtherRunPath,
    session: SessionDep,
    resources: ResourcesDep,
    tenant: CanReadRuns,
) -> RunDiff:
    async with session.begin():
        runs = []
        for rid in (run_id, other_id):
            run = await crud.get_run(session=session, tenant_id=tenant, run_id=rid, with_tasks=True)
            if run is None:
                raise await missing_run(session, tenant, rid)
            runs.append(run)
        return await diff_runs(session, resources.objects, runs[0], runs[1])

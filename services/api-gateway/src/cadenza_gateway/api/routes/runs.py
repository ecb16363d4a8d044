"""/v1/runs: start runs (idempotently), list them, read them from PostgreSQL (the truth)
or poll their hot status."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated

from cadenza_state import RunRecord, RunStatus
from fastapi import APIRouter, Depends, Path, Query, Response
from opentelemetry import trace
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ... import crud, metrics
from ...auth import CanReadRuns, CanWriteRuns
from ...auth.quotas import check_run_quota
from ...crud import usage as usage_crud
from ...documents import ensure_fits_in_event
from ...models import RunCreate, RunPublic, RunsPublic, RunStatusPublic, RunSummary
from ...pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decode_time_id_cursor, encode_cursor
from ...problems import IdempotencyKeyReused, WorkflowNotFound, problem_responses
from ...query_types import INTEGER_TEXT
from ...settings import GatewaySettings
from ...submissions import pin_agents, prepare_submission, replay_mismatch
from ..deps import (
    IdempotencyKeyHeader,
    ResourcesDep,
    SessionDep,
    SettingsDep,
    require_json,
)
from ..missing_runs import missing_run

log = logging.getLogger("cadenza.gateway")
router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=problem_responses(422))

REPLAYED_HEADER = "Idempotent-Replayed"
# /status must stay cheap even when Redis is sick: fall back to PostgreSQL quickly.
HOT_STATUS_TIMEOUT_S = 0.5

RunIdPath = Annotated[str, Path(max_length=64, description="Run id.")]


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def run_location(settings: GatewaySettings, run_id: str) -> str:
    return f"{settings.public_url}/v1/runs/{run_id}"


async def _replay(
    run: RunRecord,
    run_in: RunCreate,
    *,
    session: AsyncSession,
    response: Response,
    settings: GatewaySettings,
    tenant: str,
) -> RunPublic:
    """Answer a repeated Idempotency-Key with the run it created (200), unless the request
    differs from the original (422: a key names one request)."""
    mismatch = await replay_mismatch(run, run_in)
    if mismatch is not None:
        raise IdempotencyKeyReused(
            f"this Idempotency-Key was used for another request ({mismatch}); use a new key "
            "for a new run",
            run_id=run.id,
        )
    metrics.IDEMPOTENT_REPLAYS.labels(tenant).inc()
    async with session.begin():
        tasks = await crud.list_tasks(session=session, run_id=run.id)
    response.status_code = 200
    response.headers[REPLAYED_HEADER] = "true"
    response.headers["Location"] = run_location(settings, run.id)
    return RunPublic.from_run(run, tasks)


@router.post(
    "",
    status_code=201,
    response_model=RunPublic,
    summary="Start a run",
    dependencies=[Depends(require_json), Depends(check_run_quota)],
    responses={
        200: {"model": RunPublic, "description": "Idempotent replay: the key's existing run"},
        **problem_responses(400, 404, 413, 415, 422, 429),
    },
)
async def create_run(
    run_in: RunCreate,
    response: Response,
    session: SessionDep,
    resources: ResourcesDep,
    settings: SettingsDep,
    tenant: CanWriteRuns,
    idempotency_key: IdempotencyKeyHeader = None,
) -> RunPublic:
    """Validate the inputs against the workflow, then write the pending run, its
    `plan.requested` event and a `run.accepted` run event in one transaction."""
    if idempotency_key is not None:
        async with session.begin():
            existing = await crud.get_run_by_idempotency_key(
                session=session, tenant_id=tenant, key=idempotency_key
            )
        if existing is not None:
            return await _replay(
                existing,
                run_in,
                session=session,
                response=response,
                settings=settings,
                tenant=tenant,
            )
    registered = None
    if run_in.workflow is not None:
        name, version = run_in.workflow_ref()
        async with session.begin():
            registered = await crud.get_workflow(
                session=session, tenant_id=tenant, name=name, version=version
            )
        if registered is None:
            which = f"version {version} of workflow {name!r}" if version else f"workflow {name!r}"
            raise WorkflowNotFound(f"no {which}; register it with POST /v1/workflows")
    # Parsing and validation happen outside any transaction: no lock held while they run.
    submission = await prepare_submission(run_in, registered)
    async with session.begin():
        submission = await pin_agents(submission, session=session, tenant_id=tenant)
    ensure_fits_in_event(submission.spec, submission.inputs, settings.max_event_bytes)
    try:
        async with session.begin():
            created = await crud.create_run(
                session=session,
                registry=resources.registry,
                tenant_id=tenant,
                workflow_name=submission.workflow_name,
                workflow_version=submission.workflow_version,
                spec=submission.spec,
                inputs=submission.inputs,
                idempotency_key=idempotency_key,
                budget=run_in.budget.model_dump(exclude_none=True) if run_in.budget else None,
                publisher=resources.relay.publisher_id,
                alone=True,  # nothing else in this transaction: one statement, no BEGIN
            )
    except IntegrityError:
        if idempotency_key is None:
            raise
        # A concurrent request with the same key committed first: answer with its run.
        metrics.WRITE_CONFLICTS.labels("idempotency_key").inc()
        async with session.begin():
            winner = await crud.get_run_by_idempotency_key(
                session=session, tenant_id=tenant, key=idempotency_key
            )
        if winner is None:
            raise
        return await _replay(
            winner,
            run_in,
            session=session,
            response=response,
            settings=settings,
            tenant=tenant,
        )
    run = created.run
    # Sent by this process now, off the request's path (the relay takes over on failure).
    resources.relay.publish_soon(created.events)
    metrics.RUNS_ACCEPTED.labels(tenant).inc()
    span = trace.get_current_span()
    span.set_attribute("cadenza.run_id", run.id)
    span.set_attribute("cadenza.workflow.name", run.workflow_name)
    log.info(
        "run %s accepted: workflow %s@%s, tenant %s",
        run.id,
        run.workflow_name,
        run.workflow_version if run.workflow_version is not None else "inline",
        tenant,
    )
    response.headers["Location"] = run_location(settings, run.id)
    return RunPublic.from_run(run, [])


@router.get(
    "",
    response_model=RunsPublic,
    summary="List runs, newest first",
    responses=problem_responses(400, 422),
)
async def list_runs(
    session: SessionDep,
    tenant: CanReadRuns,
    status: Annotated[RunStatus | None, Query(description="Only runs in this status.")] = None,
    workflow: Annotated[str | None, Query(description="Only runs of this workflow name.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size."), INTEGER_TEXT] = (
        DEFAULT_PAGE_SIZE
    ),
    cursor: Annotated[str | None, Query(description="`next_cursor` of the last page.")] = None,
) -> RunsPublic:
    after = decode_time_id_cursor(cursor) if cursor else None
    runs = await crud.list_runs(
        session=session,
        tenant_id=tenant,
        status=status.value if status is not None else None,
        workflow_name=workflow,
        after=after,
        limit=limit + 1,
    )
    page = runs[:limit]
    more = len(runs) > limit
    return RunsPublic(
        items=[RunSummary.from_record(r) for r in page],
        next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None,
    )


@router.get(
    "/{run_id}",
    response_model=RunPublic,
    summary="Get a run and its tasks",
    responses=problem_responses(404, 410),
)
async def get_run(run_id: RunIdPath, session: SessionDep, tenant: CanReadRuns) -> RunPublic:
    """The run, its tasks, its pinned agents and its usage (per task, agent and model)."""
    run = await crud.get_run(session=session, tenant_id=tenant, run_id=run_id, with_tasks=True)
    if run is None:
        raise await missing_run(session, tenant, run_id)
    usage = await usage_crud.run_usage(session=session, tenant_id=tenant, run_id=run.id)
    return RunPublic.from_run(run, run.tasks, usage)


@router.get(
    "/{run_id}/status",
    response_model=RunStatusPublic,
    summary="Poll a run's status (cheap)",
    responses=problem_responses(404, 410),
)
async def get_run_status(
    run_id: RunIdPath, session: SessionDep, resources: ResourcesDep, tenant: CanReadRuns
) -> RunStatusPublic:
    """The Redis hot status when present (and not another tenant's), else PostgreSQL."""
    try:
        async with asyncio.timeout(HOT_STATUS_TIMEOUT_S):
            hot = await resources.hot.get_run_status(run_id)
    except Exception as exc:  # a cache: any Redis trouble means "ask the database"
        log.warning("hot status of run %s unavailable (%s); reading PostgreSQL", run_id, exc)
        hot = None
    if hot and hot.get("status") and hot.get("tenant_id", tenant) == tenant:
        details = {k: v for k, v in hot.items() if k != "status"}
        return RunStatusPublic.of(run_id, hot["status"], "hot", details)
    run = await crud.get_run(session=session, tenant_id=tenant, run_id=run_id)
    if run is None:
        raise await missing_run(session, tenant, run_id)
    details = {"updated_at": _iso(run.updated_at)}
    if run.finished_at is not None:
        details["finished_at"] = _iso(run.finished_at)
    return RunStatusPublic.of(run.id, run.status, "database", details)

"""/v1/runs/{id}/events: a run's events live, as Server-Sent Events or over a WebSocket.

Each event carries its sequence number in the run's log (SSE ``id:``); a client that sends
``Last-Event-ID: n`` (or ``?after=n``) gets every event after n, then live ones, so a late or
reconnecting client misses nothing. The stream ends after the run's terminal event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, cast

from cadenza_runtime import Resources, RunEventEntry, RunEventLog
from cadenza_state import TERMINAL_RUN_STATUSES, RunRecord
from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from opentelemetry import trace
from prometheus_client import Gauge
from sqlalchemy import select
from sse_starlette import EventSourceResponse, ServerSentEvent

from ...auth import CanReadRuns, Scope, authenticate, authorize, bearer_token
from ...problems import (
    FieldProblem,
    InvalidRequest,
    ProblemError,
    problem_response,
    problem_responses,
)
from ...query_types import INTEGER_TEXT
from ...settings import GatewaySettings
from ..deps import ResourcesDep, SettingsDep
from ..missing_runs import missing_run
from .runs import RunIdPath

log = logging.getLogger("cadenza.gateway.events")
router = APIRouter(prefix="/v1/runs", tags=["runs"])

STREAMS_OPEN = Gauge(
    "cadenza_gateway_event_streams_open", "Run event streams being served now.", ["transport"]
)
END_EVENT = "end"

AfterQuery = Annotated[
    int | None,
    Query(ge=0, description="Resume after this sequence number (what Last-Event-ID carries)."),
    INTEGER_TEXT,
]


def _after(last_event_id: str | None, after: int | None) -> int:
    """Last-Event-ID (sent by EventSource on reconnect) wins over ``?after=``."""
    if last_event_id is None or not last_event_id.strip():
        return after or 0
    value = last_event_id.strip()
    if not value.isdigit():
        raise InvalidRequest(
            f"Last-Event-ID must be a sequence number, got {value[:40]!r}",
            errors=[
                FieldProblem(
                    field="header.Last-Event-ID",
                    code="not_a_sequence_number",
                    message="Last-Event-ID must be the non-negative integer id of an event",
                )
            ],
        )
    return int(value)


async def _run_status(resources: Resources, tenant: str, run_id: str) -> str | None:
    async with resources.sessions() as session:
        status = await session.scalar(
            select(RunRecord.status).where(RunRecord.id == run_id, RunRecord.tenant_id == tenant)
        )
    return None if status is None else str(status)


def _finished_check(
    resources: Resources, tenant: str, run_id: str
) -> Callable[[], Awaitable[bool]]:
    async def finished() -> bool:
        return await _run_status(resources, tenant, run_id) in TERMINAL_RUN_STATUSES

    return finished


async def _events(
    resources: Resources, block_s: float, tenant: str, run_id: str, after: int
) -> AsyncIterator[tuple[RunEventEntry | None, str | None]]:
    """(entry, None) per event; (None, status) once if the run ended without a terminal
    event in the log. Each blocking read waits up to ``block_s`` before checking whether
    the run ended without a terminal event in the log (expired, or never recorded)."""
    events = RunEventLog(resources.hot)
    last: RunEventEntry | None = None
    async for entry in events.follow(
        run_id, after, block_s=block_s, finished=_finished_check(resources, tenant, run_id)
    ):
        last = entry
        yield entry, None
    if last is None or not last.terminal:
        yield None, await _run_status(resources, tenant, run_id)


async def _require_run(resources: Resources, tenant: str, run_id: str) -> None:
    if await _run_status(resources, tenant, run_id) is None:
        async with resources.sessions() as session:
            raise await missing_run(session, tenant, run_id)


@router.get(
    "/{run_id}/events",
    summary="Follow a run's events (Server-Sent Events)",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream"},
        **problem_responses(404, 410, 422),
    },
)
async def stream_run_events(
    run_id: RunIdPath,
    resources: ResourcesDep,
    settings: SettingsDep,
    tenant: CanReadRuns,
    after: AfterQuery = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """`event:` is the event kind (`task.started`, `run.succeeded`…), `id:` its sequence
    number, `data:` the event as JSON. Ends after the run's terminal event; if the run is
    over but its log holds no terminal event (expired), a final `end` event says so."""
    start = _after(last_event_id, after)
    await _require_run(resources, tenant, run_id)
    # Touch the event log (Redis) before the response starts: while Redis is down the
    # client then gets 503 + Retry-After from the middleware, not a 200 cut off mid-stream.
    await RunEventLog(resources.hot).read(run_id, start, count=1)
    trace.get_current_span().set_attribute("cadenza.run_id", run_id)

    async def body() -> AsyncIterator[ServerSentEvent]:
        STREAMS_OPEN.labels("sse").inc()
        try:
            async for entry, status in _events(
                resources, settings.event_stream_block_s, tenant, run_id, start
            ):
                if entry is not None:
                    yield ServerSentEvent(
                        data=json.dumps(entry.to_dict(), default=str),
                        event=entry.kind,
                        id=str(entry.seq),
                    )
                else:
                    yield ServerSentEvent(data=json.dumps({"status": status}), event=END_EVENT)
        finally:
            STREAMS_OPEN.labels("sse").dec()

    return EventSourceResponse(
        body(), ping=settings.event_stream_heartbeat_s, headers={"Cache-Control": "no-store"}
    )


async def _refuse(websocket: WebSocket, problem: ProblemError) -> None:
    """Refuse the handshake with the problem as an HTTP answer (404, 410, 401…, as the SSE
    route), where the server supports the denial response extension (uvicorn does); else
    close with 4000 + the status (a client then sees only that the upgrade failed)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        request_id = websocket.scope.get("state", {}).get("request_id")
        body = problem.to_problem(websocket.url.path, request_id)
        await websocket.send_denial_response(problem_response(body, problem.headers))
    else:
        await websocket.close(code=4000 + problem.status, reason=str(problem.detail)[:120])


@router.websocket("/{run_id}/events")
async def websocket_run_events(
    websocket: WebSocket,
    run_id: str,
    after: AfterQuery = None,
) -> None:
    """The same events as the SSE stream, one JSON text message each:
    ``{"id": n, "event": kind, "data": {...}}``; closes (1000) after the terminal event.
    A refused handshake is answered like the SSE route, with problem details: 404 for a run
    that does not exist (410: deleted by retention), 401 for a missing or bad credential
    (`Authorization: Bearer`), 403 for one without `runs:read`."""
    resources = cast(Resources, websocket.app.state.resources)
    settings = cast(GatewaySettings, websocket.app.state.settings)
    try:
        principal = authorize(
            await authenticate(websocket, bearer_token(websocket)), [Scope.RUNS_READ]
        )
    except ProblemError as exc:
        await _refuse(websocket, exc)
        return
    tenant = principal.tenant
    if await _run_status(resources, tenant, run_id) is None:
        async with resources.sessions() as session:
            await _refuse(websocket, await missing_run(session, tenant, run_id))
        return
    await websocket.accept()
    STREAMS_OPEN.labels("websocket").inc()
    try:
        async for entry, status in _events(
            resources, settings.event_stream_block_s, tenant, run_id, after or 0
        ):
            message: dict[str, Any] = (
                {"id": entry.seq, "event": entry.kind, "data": entry.to_dict()}
                if entry is not None
                else {"id": None, "event": END_EVENT, "data": {"status": status}}
            )
            await websocket.send_text(json.dumps(message, default=str))
        await websocket.close(code=1000)
    except WebSocketDisconnect:
        log.debug("websocket client of run %s left", run_id)
    finally:
        STREAMS_OPEN.labels("websocket").dec()

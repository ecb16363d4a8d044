"""/v1/runs/{id}/calls and /v1/runs/{id}/tasks/{task}/calls: every LLM call (messages sent,
response, tool calls asked, tokens, cost, latency, model, provider) and every tool call
(arguments, result or error, duration) of a run, in the order they were recorded, paginated.
Bodies the worker claim-checked to the object store are read back here."""

from __future__ import annotations

import json
from typing import Annotated, Any

from cadenza_state import (
    LLMCallRecord,
    ObjectNotFound,
    ObjectStore,
    RunRecord,
    TaskRecord,
    ToolCallRecord,
)
from cadenza_state.claimcheck import load_body
from cadenza_workflow import parse_spec
from fastapi import APIRouter, Path, Query
from opentelemetry import trace

from ... import crud, metrics
from ...auth import CanReadRuns
from ...crud.calls import CallRow, list_calls
from ...pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decode_call_cursor, encode_cursor
from ...problems import RunNotFound, problem_responses
from ...query_types import INTEGER_TEXT
from ...replay_models import CallPublic, CallsPublic
from ..deps import ResourcesDep, SessionDep
from ..missing_runs import missing_run
from .runs import RunIdPath

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=problem_responses(422))

TaskPath = Annotated[str, Path(max_length=255, description="Spec task id (`node_id`).")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size."), INTEGER_TEXT]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the last page.")]


async def _object(objects: ObjectStore, key: str | None) -> Any:
    if key is None:
        return None
    try:
        return json.loads(await objects.get(key))
    except ObjectNotFound:
        return {"claim_check": key, "missing": True}


def _params_key(task: TaskRecord) -> str:
    # Where the orchestrator claim-checks params too large for task.ready (machine.params_key).
    return f"runs/{task.run_id}/tasks/{task.id}/params.json"


async def to_public(
    row: CallRow,
    objects: ObjectStore,
    node_of: dict[str, TaskRecord],
    tool_of: dict[str, str | None],
) -> CallPublic:
    rec = row.record
    if isinstance(rec, (LLMCallRecord, ToolCallRecord)):
        task = node_of.get(rec.task_id)
        common: dict[str, Any] = {
            "task_id": rec.task_id,
            "node_id": task.node_id if task else rec.task_id,
            "item_index": task.item_index if task else None,
            "attempt": rec.attempt,
            "turn": rec.turn,
            "at": rec.created_at,
            "started_at": rec.started_at,
            "latency_ms": rec.latency_ms,
            "status": rec.status,
            "error": rec.error,
            "agent": rec.agent,
        }
    if isinstance(rec, LLMCallRecord):
        request = await load_body(objects, rec.request)
        messages = request.get("messages") if isinstance(request, dict) else None
        return CallPublic(
            id=f"llm:{rec.id}",
            kind="llm",
            **common,
            agent_version=rec.agent_version,
            provider=rec.provider,
            model=rec.model,
            messages=messages if isinstance(messages, list) else None,
            request=request,
            response=await load_body(objects, rec.response),
            tool_calls=rec.tool_calls,
            input_tokens=rec.input_tokens,
            output_tokens=rec.output_tokens,
            cost_usd=rec.cost_usd,
        )
    if isinstance(rec, ToolCallRecord):
        return CallPublic(
            id=f"tool:{rec.id}",
            kind="tool",
            **common,
            call_index=rec.call_index,
            tool=rec.tool,
            arguments=rec.arguments,
            result=await load_body(objects, rec.result),
        )
    task = rec
    arguments = task.input if task.input is not None else await _object(objects, _params_key(task))
    started, finished = task.started_at, task.finished_at
    latency = (finished - started).total_seconds() * 1000 if started and finished else None
    succeeded = task.status in ("succeeded", "recovered") and task.error is None
    return CallPublic(
        id=f"task:{task.id}",
        kind="tool",
        task_id=task.id,
        node_id=task.node_id,
        item_index=task.item_index,
        attempt=task.attempt,
        at=row.at,
        started_at=started,
        latency_ms=round(latency, 3) if latency is not None else None,
        status="ok" if succeeded else task.status,
        error=task.error,
        tool=tool_of.get(task.node_id),
        arguments=arguments,
        result=(
            (task.output if task.output_ref is None else await _object(objects, task.output_ref))
            if succeeded
            else None
        ),
    )


async def _calls(
    session: SessionDep,
    resources: ResourcesDep,
    tenant: str,
    run_id: str,
    node_id: str | None,
    limit: int,
    cursor: str | None,
) -> CallsPublic:
    after = decode_call_cursor(cursor) if cursor else None
    async with session.begin():
        run: RunRecord | None = await crud.get_run(session=session, tenant_id=tenant, run_id=run_id)
        if run is None:
            raise await missing_run(session, tenant, run_id)
        spec = parse_spec(run.spec)
        if node_id is not None and node_id not in spec.task_ids:
            raise RunNotFound(f"run {run_id!r} has no task {node_id!r}")
        rows = await list_calls(
            session=session, run=run, spec=spec, node_id=node_id, after=after, limit=limit + 1
        )
        tasks = await crud.list_tasks(session=session, run_id=run.id)
    by_id = {t.id: t for t in tasks}
    tools = {t.id: t.tool for t in spec.tasks}
    page = rows[:limit]
    items = [await to_public(row, resources.objects, by_id, tools) for row in page]
    for item in items:
        metrics.CALLS_SERVED.labels(item.kind).inc()
    trace.get_current_span().set_attribute("cadenza.calls", len(items))
    more = len(rows) > limit
    return CallsPublic(items=items, next_cursor=encode_cursor(*page[-1].position) if more else None)


@router.get(
    "/{run_id}/calls",
    response_model=CallsPublic,
    summary="Every LLM and tool call of a run, in order",
    responses=problem_responses(400, 404, 410),
)
async def get_run_calls(
    run_id: RunIdPath,
    session: SessionDep,
    resources: ResourcesDep,
    tenant: CanReadRuns,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
) -> CallsPublic:
    """LLM calls (`kind: llm`: messages sent, response, tool calls asked, tokens, cost,
    latency, model, provider) and tool calls (`kind: tool`: arguments, result or error,
    duration) — an agent's, and each dispatched tool task's — oldest first."""
    return await _calls(session, resources, tenant, run_id, None, limit, cursor)


@router.get(
    "/{run_id}/tasks/{task_id}/calls",
    response_model=CallsPublic,
    summary="Every LLM and tool call of one task of a run, in order",
    responses=problem_responses(400, 404, 410),
)
async def get_task_calls(
    run_id: RunIdPath,
    task_id: TaskPath,
    session: SessionDep,
    resources: ResourcesDep,
    tenant: CanReadRuns,
    limit: Limit = DEFAULT_PAGE_SIZE,
    cursor: Cursor = None,
) -> CallsPublic:
    """The calls of one spec task (all its attempts and fan-out instances)."""
    return await _calls(session, resources, tenant, run_id, task_id, limit, cursor)

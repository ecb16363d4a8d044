"""/v1/runs/{id}/timeline: every task with its attempts, LLM calls and tool calls, each
with start, end (or latency), tokens and cost — what a latency waterfall needs.

Offsets (`offset_ms`) are milliseconds from the run's creation, so a client draws bars
without parsing dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cadenza_evaluation import arguments_digest
from cadenza_state import (
    LLMCallRecord,
    RunRecord,
    TaskAttemptRecord,
    TaskRecord,
    ToolCallRecord,
)
from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ...auth import CanReadRuns
from ...problems import problem_responses
from ..deps import SessionDep
from ..missing_runs import missing_run
from .runs import RunIdPath

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=problem_responses(422))


class Span(BaseModel):
    """Where a bar sits on the waterfall."""

    started_at: datetime | None = None
    finished_at: datetime | None = None
    offset_ms: float | None = Field(default=None, description="Start, ms after the run's creation.")
    duration_ms: float | None = None


class AttemptTimeline(Span):
    attempt: int
    status: str
    worker_id: str | None = None
    error: dict[str, Any] | None = None


class LLMCallTimeline(Span):
    attempt: int
    turn: int
    agent: str
    provider: str
    model: str
    status: str
    input_tokens: int
    output_tokens: int
    cost_usd: float


class ToolCallTimeline(Span):
    attempt: int
    turn: int
    call_index: int
    tool: str
    status: str
    error: str | None = None
    arguments_digest: str | None = Field(
        default=None,
        description="SHA-256 prefix of the canonical arguments: equal calls have equal digests "
        "(trajectory evaluation's `no_repeated_call`).",
    )


class TaskTimeline(Span):
    task_id: str
    node_id: str
    item_index: int | None = None
    status: str
    attempt: int = Field(description="Current (last dispatched) attempt.")
    ready_at: datetime | None = None
    attempts: list[AttemptTimeline]
    llm_calls: list[LLMCallTimeline]
    tool_calls: list[ToolCallTimeline]
    calls_url: str = Field(description="The task's calls, whole (messages, results).")
    reused_from: str | None = Field(
        default=None, description="Completed from a recorded output (rerun / fork)."
    )


class Totals(BaseModel):
    tasks: int
    attempts: int
    llm_calls: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class RunTimeline(Span):
    run_id: str
    status: str
    workflow_name: str
    workflow_version: int | None = None
    started_by: dict[str, Any] | None = Field(
        default=None,
        description="The upstream event (trigger: topic, partition, offset, event id) or "
        "schedule tick that started the run; null for an API call.",
    )
    tasks: list[TaskTimeline]
    totals: Totals
    calls_url: str = Field(description="Every call of the run, whole (messages, results).")


def _ms(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((_aware(later) - _aware(earlier)).total_seconds() * 1000, 3)


def _aware(at: datetime) -> datetime:
    # SQLite hands datetimes back naive; they were written in UTC.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _span(origin: datetime, start: datetime | None, end: datetime | None) -> dict[str, Any]:
    return {
        "started_at": start,
        "finished_at": end,
        "offset_ms": _ms(start, origin),
        "duration_ms": _ms(end, start),
    }


def _call_span(origin: datetime, start: datetime | None, latency_ms: float) -> dict[str, Any]:
    """LLM and tool calls record a start and a latency; their end follows."""
    end = _aware(start) + timedelta(milliseconds=latency_ms) if start is not None else None
    return {
        "started_at": start,
        "finished_at": end,
        "offset_ms": _ms(start, origin),
        "duration_ms": round(latency_ms, 3),
    }


async def _rows(session: AsyncSession, model: Any, run_id: str, order: Any) -> list[Any]:
    return list(
        (await session.scalars(select(model).where(model.run_id == run_id).order_by(*order))).all()
    )


async def build_timeline(session: AsyncSession, run: RunRecord) -> RunTimeline:
    origin = run.created_at
    tasks = await _rows(session, TaskRecord, run.id, (TaskRecord.ready_at, TaskRecord.id))
    attempts = list(
        (
            await session.scalars(
                select(TaskAttemptRecord)
                .join(TaskRecord, TaskRecord.id == TaskAttemptRecord.task_id)
                .where(TaskRecord.run_id == run.id)
                .order_by(TaskAttemptRecord.task_id, TaskAttemptRecord.attempt)
            )
        ).all()
    )
    llm = await _rows(session, LLMCallRecord, run.id, (LLMCallRecord.attempt, LLMCallRecord.turn))
    tools = await _rows(
        session, ToolCallRecord, run.id, (ToolCallRecord.attempt, ToolCallRecord.call_index)
    )
    out: list[TaskTimeline] = []
    for t in tasks:
        out.append(
            TaskTimeline(
                task_id=t.id,
                node_id=t.node_id,
                item_index=t.item_index,
                status=t.status,
                attempt=t.attempt,
                ready_at=t.ready_at,
                calls_url=f"/v1/runs/{run.id}/tasks/{t.node_id}/calls",
                reused_from=t.reused_from,
                **_span(origin, t.started_at, t.finished_at),
                attempts=[
                    AttemptTimeline(
                        attempt=a.attempt,
                        status=a.status,
                        worker_id=a.worker_id,
                        error=a.error,
                        **_span(origin, a.started_at, a.finished_at),
                    )
                    for a in attempts
                    if a.task_id == t.id
                ],
                llm_calls=[
                    LLMCallTimeline(
                        attempt=c.attempt,
                        turn=c.turn,
                        agent=c.agent,
                        provider=c.provider,
                        model=c.model,
                        status=c.status,
                        input_tokens=c.input_tokens,
                        output_tokens=c.output_tokens,
                        cost_usd=c.cost_usd,
                        **_call_span(origin, c.started_at, c.latency_ms),
                    )
                    for c in llm
                    if c.task_id == t.id
                ],
                tool_calls=[
                    ToolCallTimeline(
                        attempt=c.attempt,
                        turn=c.turn,
                        call_index=c.call_index,
                        tool=c.tool,
                        status=c.status,
                        arguments_digest=arguments_digest(c.arguments),
                        error=c.error,
                        **_call_span(origin, c.started_at, c.latency_ms),
                    )
                    for c in tools
                    if c.task_id == t.id
                ],
            )
        )
    return RunTimeline(
        run_id=run.id,
        status=run.status,
        workflow_name=run.workflow_name,
        workflow_version=run.workflow_version,
        started_by=run.started_by,
        **_span(origin, origin, run.finished_at),
        tasks=out,
        calls_url=f"/v1/runs/{run.id}/calls",
        totals=Totals(
            tasks=len(tasks),
            attempts=len(attempts),
            llm_calls=len(llm),
            tool_calls=len(tools),
            input_tokens=sum(c.input_tokens for c in llm),
            output_tokens=sum(c.output_tokens for c in llm),
            cost_usd=round(sum(c.cost_usd for c in llm), 6),
        ),
    )


@router.get(
    "/{run_id}/timeline",
    response_model=RunTimeline,
    summary="A run's latency waterfall: tasks, attempts, LLM and tool calls",
    responses=problem_responses(404, 410),
)
async def get_run_timeline(
    run_id: RunIdPath, session: SessionDep, tenant: CanReadRuns
) -> RunTimeline:
    async with session.begin():
        run = await session.scalar(
            select(RunRecord).where(RunRecord.id == run_id, RunRecord.tenant_id == tenant)
        )
        if run is None:
            raise await missing_run(session, tenant, run_id)
        return await build_timeline(session, run)

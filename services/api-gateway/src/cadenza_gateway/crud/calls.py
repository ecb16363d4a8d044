"""A run's calls in the order they were recorded, from three sources: ``llm_calls`` (agent
turns), ``tool_calls`` (an agent's tool calls) and the dispatched rows of ``tool`` tasks
(a tool task IS one call: its params, its output or error). A task completed from a
recorded output (rerun / fork) made no call and has none.

Keyset pagination over the merge: each source is read after the cursor's position
``(at, source rank, id)`` in its own order, and the pages are merged."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from cadenza_state import LLMCallRecord, RunRecord, TaskRecord, ToolCallRecord
from cadenza_workflow import WorkflowSpec
from sqlalchemy import ColumnElement, and_, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

LLM, TOOL, TASK = 0, 1, 2
"""Source ranks: the tie-break between calls recorded at the same instant."""

Position = tuple[datetime, int, str]


@dataclass(frozen=True)
class CallRow:
    at: datetime
    rank: int
    ident: str
    record: LLMCallRecord | ToolCallRecord | TaskRecord

    @property
    def position(self) -> Position:
        return (self.at, self.rank, self.ident)

    def sort_key(self) -> tuple[datetime, int, int | str]:
        at = self.at if self.at.tzinfo is not None else self.at.replace(tzinfo=UTC)
        return (at, self.rank, int(self.ident) if self.rank != TASK else self.ident)


def _after(at_col: Any, id_col: Any, rank: int, after: Position | None) -> ColumnElement[bool]:
    if after is None:
        return true()
    at, after_rank, ident = after
    if rank < after_rank:
        return at_col > at
    if rank > after_rank:
        return at_col >= at
    key: int | str = ident if rank == TASK else int(ident) if ident.isdigit() else -1
    return or_(at_col > at, and_(at_col == at, id_col > key))


def tool_task_nodes(spec: WorkflowSpec) -> tuple[set[str], set[str]]:
    """(tool tasks, fan-out tasks): a fan-out task's own row is never dispatched."""
    tools = {t.id for t in spec.tasks if t.kind == "tool"}
    fan_out = {t.id for t in spec.tasks if t.for_each is not None}
    return tools, fan_out


def _task_filter(model: Any, run_id: str, node_id: str | None) -> ColumnElement[bool]:
    if node_id is None:
        return true()
    ids = select(TaskRecord.id).where(TaskRecord.run_id == run_id, TaskRecord.node_id == node_id)
    return model.task_id.in_(ids)


async def list_calls(
    *,
    session: AsyncSession,
    run: RunRecord,
    spec: WorkflowSpec,
    node_id: str | None,
    after: Position | None,
    limit: int,
) -> list[CallRow]:
    """Up to ``limit`` calls of ``run`` (of one spec task when ``node_id`` is given) after
    ``after``, oldest first."""
    rows: list[CallRow] = []
    sources: tuple[tuple[type[LLMCallRecord] | type[ToolCallRecord], int], ...] = (
        (LLMCallRecord, LLM),
        (ToolCallRecord, TOOL),
    )
    for model, rank in sources:
        found = await session.scalars(  # one source's page, in its own order
            select(model)
            .where(
                model.run_id == run.id,
                _task_filter(model, run.id, node_id),
                _after(model.created_at, model.id, rank, after),
            )
            .order_by(model.created_at, model.id)
            .limit(limit)
        )
        recorded = cast(Sequence[LLMCallRecord | ToolCallRecord], found.all())
        rows += [CallRow(r.created_at, rank, str(r.id), r) for r in recorded]
    tool_nodes, fan_out = tool_task_nodes(spec)
    if node_id is not None:
        tool_nodes &= {node_id}
    if tool_nodes:
        tasks = await session.scalars(
            select(TaskRecord)
            .where(
                TaskRecord.run_id == run.id,
                TaskRecord.node_id.in_(sorted(tool_nodes)),
                TaskRecord.attempt >= 1,
                TaskRecord.finished_at.is_not(None),
                or_(
                    TaskRecord.item_index.is_not(None),
                    TaskRecord.node_id.not_in(sorted(fan_out)) if fan_out else true(),
                ),
                _after(TaskRecord.finished_at, TaskRecord.id, TASK, after),
            )
            .order_by(TaskRecord.finished_at, TaskRecord.id)
            .limit(limit)
        )
        rows += [CallRow(r.finished_at, TASK, r.id, r) for r in tasks if r.finished_at]
    rows.sort(key=CallRow.sort_key)
    return rows[:limit]


@dataclass
class Counts:
    llm_calls: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


async def count_calls(
    *, session: AsyncSession, run: RunRecord, spec: WorkflowSpec, tasks: Iterable[TaskRecord]
) -> dict[str, Counts]:
    """Calls per spec task (fan-out instances added to their task)."""
    node_of = {t.id: t.node_id for t in tasks}
    counts: dict[str, Counts] = {}
    llm = await session.execute(
        select(
            LLMCallRecord.task_id,
            func.count(),
            func.coalesce(func.sum(LLMCallRecord.input_tokens), 0),
            func.coalesce(func.sum(LLMCallRecord.output_tokens), 0),
            func.coalesce(func.sum(LLMCallRecord.cost_usd), 0.0),
        )
        .where(LLMCallRecord.run_id == run.id)
        .group_by(LLMCallRecord.task_id)
    )
    for task_id, n, tokens_in, tokens_out, cost in llm.all():
        c = counts.setdefault(node_of.get(task_id, task_id), Counts())
        c.llm_calls += int(n)
        c.input_tokens += int(tokens_in)
        c.output_tokens += int(tokens_out)
        c.cost_usd += float(cost)
    agent_tools = await session.execute(
        select(ToolCallRecord.task_id, func.count())
        .where(ToolCallRecord.run_id == run.id)
        .group_by(ToolCallRecord.task_id)
    )
    for task_id, n in agent_tools.all():
        counts.setdefault(node_of.get(task_id, task_id), Counts()).tool_calls += int(n)
    tool_nodes, fan_out = tool_task_nodes(spec)
    for t in tasks:
        own_row_of_fan_out = t.item_index is None and t.node_id in fan_out
        if t.node_id in tool_nodes and t.attempt >= 1 and not own_row_of_fan_out:
            counts.setdefault(t.node_id, Counts()).tool_calls += 1
    return counts


__all__ = ["CallRow", "Counts", "count_calls", "list_calls"]

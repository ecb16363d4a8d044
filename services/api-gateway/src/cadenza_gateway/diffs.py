"""Two runs side by side (``GET /v1/runs/{a}/diff/{b}``): the inputs that differ, statuses,
outputs and, per spec task, both sides' status, output (claim-checked ones read back),
cache key, reuse and calls."""

from __future__ import annotations

import json
from typing import Any

from cadenza_state import ObjectNotFound, ObjectStore, RunRecord, TaskRecord
from cadenza_workflow import parse_spec
from sqlalchemy.ext.asyncio import AsyncSession

from .crud.calls import Counts, count_calls
from .replay_models import CallCounts, RunDiff, TaskDiff, TaskSide, ValueDiff


async def _output(objects: ObjectStore, task: TaskRecord) -> Any:
    if task.output_ref is None:
        return task.output
    try:
        return json.loads(await objects.get(task.output_ref))
    except ObjectNotFound:
        return {"claim_check": task.output_ref, "missing": True}


async def _side(
    objects: ObjectStore, task: TaskRecord | None, counts: Counts | None
) -> TaskSide | None:
    if task is None:
        return None
    c = counts or Counts()
    return TaskSide(
        status=task.status,
        output=await _output(objects, task),
        error=task.error,
        cache_key=task.cache_key,
        reused_from=task.reused_from,
        calls=CallCounts(
            llm_calls=c.llm_calls,
            tool_calls=c.tool_calls,
            input_tokens=c.input_tokens,
            output_tokens=c.output_tokens,
            cost_usd=round(c.cost_usd, 6),
        ),
    )


async def diff_runs(
    session: AsyncSession, objects: ObjectStore, a: RunRecord, b: RunRecord
) -> RunDiff:
    """``a`` and ``b`` with their tasks loaded (the caller checked both are the tenant's)."""
    spec_a, spec_b = parse_spec(a.spec), parse_spec(b.spec)
    counts_a = await count_calls(session=session, run=a, spec=spec_a, tasks=a.tasks)
    counts_b = await count_calls(session=session, run=b, spec=spec_b, tasks=b.tasks)
    nodes_a = {t.node_id: t for t in a.tasks if t.item_index is None}
    nodes_b = {t.node_id: t for t in b.tasks if t.item_index is None}
    order = list(dict.fromkeys([*spec_a.task_ids, *spec_b.task_ids]))
    tasks: list[TaskDiff] = []
    for nid in order:
        side_a = await _side(objects, nodes_a.get(nid), counts_a.get(nid))
        side_b = await _side(objects, nodes_b.get(nid), counts_b.get(nid))
        tasks.append(
            TaskDiff(
                node_id=nid,
                a=side_a,
                b=side_b,
                same_output=(
                    side_a is not None and side_b is not None and side_a.output == side_b.output
                ),
                same_cache_key=(
                    side_a is not None
                    and side_b is not None
                    and side_a.cache_key is not None
                    and side_a.cache_key == side_b.cache_key
                ),
            )
        )
    names = sorted(set(a.inputs) | set(b.inputs))
    inputs = {
        n: ValueDiff(a=a.inputs.get(n), b=b.inputs.get(n))
        for n in names
        if a.inputs.get(n) != b.inputs.get(n)
    }
    return RunDiff(
        a=a.id,
        b=b.id,
        related=a.parent_run_id == b.id or b.parent_run_id == a.id,
        status=ValueDiff(a=a.status, b=b.status),
        output=ValueDiff(a=a.output, b=b.output),
        same_output=a.output == b.output,
        inputs=inputs,
        tasks=tasks,
    )

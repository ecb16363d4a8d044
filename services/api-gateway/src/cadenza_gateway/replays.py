"""Rerun and fork: the new run's spec, inputs, lineage and what it may reuse (docs/replay.md).

The gateway only decides what is *allowed* to be reused: a map task → the cache key its
parent output was recorded under. The orchestrator (the one writer of task state) computes
each task's own key when it becomes ready and completes it from the parent's output only
under the same key (``task.reused``); otherwise the task runs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cadenza_state import RunRecord, TaskRecord, TaskStatus
from cadenza_workflow import WorkflowSpec, parse_spec
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from .crud.agents import get_agent
from .problems import FieldProblem, InvalidRequest
from .replay_models import ForkCreate, RerunCreate
from .submissions import resolve_run_inputs

REUSABLE = TaskStatus.SUCCEEDED.value


@dataclass(frozen=True)
class ChildRun:
    """What ``crud.create_run`` needs for a rerun or fork."""

    spec: dict[str, Any]
    inputs: dict[str, Any]
    lineage: dict[str, Any]
    replay: dict[str, Any]


def _invalid(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"field {field}: {message}",
        errors=[FieldProblem(field=field, code="invalid_field", message=message)],
    )


def descendants(spec: WorkflowSpec, roots: Iterable[str]) -> set[str]:
    """``roots`` and every task downstream of them (through ``needs`` and ``on_failure``)."""
    below: dict[str, list[str]] = {t.id: [] for t in spec.tasks}
    for t in spec.tasks:
        for need in t.needs:
            below[need].append(t.id)
        if t.on_failure is not None:
            below[t.id].append(t.on_failure)
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        nid = todo.pop()
        if nid not in seen:
            seen.add(nid)
            todo.extend(below[nid])
    return seen


def _nodes(tasks: Iterable[TaskRecord]) -> dict[str, TaskRecord]:
    return {t.node_id: t for t in tasks if t.item_index is None}


def _inputs(spec: WorkflowSpec, parent: RunRecord, changes: Mapping[str, Any]) -> dict[str, Any]:
    return resolve_run_inputs(spec, {**parent.inputs, **changes})


def changed_inputs(parent: RunRecord, inputs: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in inputs if parent.inputs.get(k) != inputs[k])


async def plan_rerun(parent: RunRecord, tasks: list[TaskRecord], body: RerunCreate) -> ChildRun:
    """``from`` (default: the failed tasks) and everything downstream run again; every other
    task that succeeded in the parent may reuse its output (under its cache key: a task
    whose params changed with new ``inputs`` runs again)."""
    spec = await run_in_threadpool(parse_spec, parent.spec)
    inputs = _inputs(spec, parent, body.inputs)
    nodes = _nodes(tasks)
    if body.from_ is None:
        start = sorted(n for n, t in nodes.items() if t.status == TaskStatus.FAILED.value)
        if not start:
            raise _invalid(
                "from", f"run {parent.id!r} has no failed task; name the tasks to run again"
            )
    else:
        start = list(dict.fromkeys(body.from_))
        for i, nid in enumerate(start):
            if nid not in spec.task_ids:
                raise _invalid(f"from[{i}]", f"no task {nid!r} in the run's workflow")
    again = descendants(spec, start)
    reuse = {
        nid: t.cache_key for nid, t in nodes.items() if nid not in again and t.status == REUSABLE
    }
    lineage = {
        "kind": "rerun",
        "parent_run_id": parent.id,
        "from": start,
        "inputs": changed_inputs(parent, inputs),
    }
    replay = {"parent_run_id": parent.id, "reuse": reuse, "outputs": {}, "overrides": {}}
    return ChildRun(copy.deepcopy(parent.spec), inputs, lineage, replay)


async def plan_fork(
    parent: RunRecord,
    tasks: list[TaskRecord],
    body: ForkCreate,
    *,
    session: AsyncSession,
    tenant_id: str,
) -> ChildRun:
    """Every parent output recorded under a cache key may be reused; overrides change the
    keys of the tasks they touch (and, through their outputs, of their dependants), so
    exactly those run again. A replaced output is taken as is."""
    spec = await run_in_threadpool(parse_spec, parent.spec)
    data = copy.deepcopy(parent.spec)
    by_id = {t.get("id"): t for t in data.get("tasks", []) if isinstance(t, dict)}
    overrides: dict[str, dict[str, Any]] = {}
    outputs: dict[str, Any] = {}
    for nid, override in body.tasks.items():
        where = f"tasks.{nid}"
        if nid not in spec.task_ids:
            raise _invalid(where, f"no task {nid!r} in the run's workflow")
        task = spec.task(nid)
        agent_fields = override.model_fields_set & {"agent_version", "system_prompt", "model"}
        if agent_fields and task.kind != "agent":
            field = sorted(agent_fields)[0]
            raise _invalid(f"{where}.{field}", f"task {nid!r} is not an agent task")
        if override.agent_version is not None:
            assert task.agent is not None
            name = task.agent.partition("@")[0]
            found = await get_agent(
                session=session, tenant_id=tenant_id, name=name, version=override.agent_version
            )
            if found is None:
                raise _invalid(
                    f"{where}.agent_version",
                    f"agent {name!r} has no version {override.agent_version}",
                )
            by_id[nid]["agent"] = f"{name}@{override.agent_version}"
        fields = {
            k: v
            for k, v in (("system_prompt", override.system_prompt), ("model", override.model))
            if v is not None
        }
        if fields:
            overrides[nid] = fields
        if override.replaces_output:
            outputs[nid] = override.output
    if body.model is not None:
        for t in spec.tasks:
            if t.kind == "agent":
                overrides.setdefault(t.id, {}).setdefault("model", body.model)
    inputs = _inputs(spec, parent, body.inputs)
    # Keyless outputs (recorded before cache keys existed) cannot be proven valid: a fork
    # recomputes them.
    reuse = {
        nid: t.cache_key
        for nid, t in _nodes(tasks).items()
        if t.status == REUSABLE and t.cache_key is not None
    }
    lineage = {
        "kind": "fork",
        "parent_run_id": parent.id,
        "forked_at": sorted(set(body.tasks) | set(overrides)),
        "inputs": changed_inputs(parent, inputs),
        "model": body.model,
        "tasks": {nid: sorted(o.model_fields_set) for nid, o in body.tasks.items()},
    }
    replay = {
        "parent_run_id": parent.id,
        "reuse": reuse,
        "outputs": outputs,
        "overrides": overrides,
    }
    return ChildRun(data, inputs, lineage, replay)

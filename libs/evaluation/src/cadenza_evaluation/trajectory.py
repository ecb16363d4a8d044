"""What an evaluation looks at: a run's agent steps in order (LLM turns and tool calls, from
the `llm_calls`/`tool_calls` rows the worker recorded), its output, cost and latency."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


def arguments_digest(arguments: Any) -> str:
    """Canonical digest of a tool call's arguments: equal calls, equal digests."""
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Step:
    kind: Literal["llm", "tool"]
    task: str  # the task's node id
    turn: int
    name: str  # the tool, or the model for an LLM turn
    arguments_digest: str | None = None
    status: str = "ok"
    tool_calls: int = 0  # for an LLM turn: how many tool calls it asked for


@dataclass
class Trajectory:
    run_id: str
    status: str
    steps: list[Step] = field(default_factory=list)
    output: Any = None
    cost_usd: float = 0.0
    latency_s: float | None = None

    def of_tasks(self, tasks: list[str] | None) -> list[Step]:
        return [s for s in self.steps if tasks is None or s.task in tasks]

    def tools(self, tasks: list[str] | None = None) -> list[Step]:
        return [s for s in self.of_tasks(tasks) if s.kind == "tool"]

    def turns(self, tasks: list[str] | None = None) -> list[Step]:
        return [s for s in self.of_tasks(tasks) if s.kind == "llm"]


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def trajectory_from_timeline(run: dict[str, Any], timeline: dict[str, Any]) -> Trajectory:
    """Build it from the gateway's `GET /v1/runs/{id}` and `GET /v1/runs/{id}/timeline`.
    Steps of one task keep their turn order (a turn's tool calls follow it); tasks are ordered
    by start time."""
    steps: list[Step] = []
    tasks = sorted(timeline.get("tasks") or [], key=lambda t: t.get("offset_ms") or 0.0)
    for task in tasks:
        node = task["node_id"]
        calls_by_turn: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for call in task.get("tool_calls") or []:
            calls_by_turn.setdefault((call["attempt"], call["turn"]), []).append(call)
        for llm in sorted(task.get("llm_calls") or [], key=lambda c: (c["attempt"], c["turn"])):
            key = (llm["attempt"], llm["turn"])
            calls = sorted(calls_by_turn.pop(key, []), key=lambda c: c["call_index"])
            steps.append(
                Step("llm", node, llm["turn"], llm["model"], None, llm["status"], len(calls))
            )
            steps += [
                Step("tool", node, c["turn"], c["tool"], c.get("arguments_digest"), c["status"])
                for c in calls
            ]
    created, finished = _when(run.get("created_at")), _when(run.get("finished_at"))
    totals = timeline.get("totals") or {}
    return Trajectory(
        run_id=run["id"],
        status=run["status"],
        steps=steps,
        output=run.get("output"),
        cost_usd=float(totals.get("cost_usd") or 0.0),
        latency_s=(finished - created).total_seconds() if created and finished else None,
    )

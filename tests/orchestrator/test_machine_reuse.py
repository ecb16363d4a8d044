"""The reuse transition of a rerun or fork (machine.start with a recorded output): a task
whose cache key is unchanged completes from the recorded output (`task.reused`, no
dispatch); a changed key, a changed override or no record dispatches it with its key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cadenza_orchestrator import TaskRow, machine
from cadenza_orchestrator.graph import RunGraph, task_id_for
from cadenza_orchestrator.outcome import Cached, Settled
from cadenza_workflow import build_context

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 4, tzinfo=UTC)
RUN = "child"
SPEC: dict[str, Any] = {
    "name": "m",
    "inputs": {"x": {"type": "integer"}},
    "tasks": [
        {"id": "a", "tool": "transform", "with": {"v": "${{ inputs.x }}"}},
        {"id": "fan", "tool": "transform", "for_each": [1, 2], "with": {"i": "${{ item }}"}},
        {"id": "ask", "agent": "helper@1", "prompt": "say ${{ inputs.x }}"},
    ],
}


def graph(replay: dict[str, Any] | None = None, x: int = 1) -> RunGraph:
    return RunGraph.build(RUN, SPEC, {"x": x}, replay)


def row(node: str) -> TaskRow:
    return TaskRow(
        id=task_id_for(RUN, node), run_id=RUN, node_id=node, item_index=None, status="pending", attempt=0,
        max_attempts=3,
    )  # fmt: skip


def start(g: RunGraph, node: str, cached: Cached | None = None) -> machine.Outcome:
    context = build_context(inputs=g.inputs, tasks={}, run_id=RUN)
    return machine.start(g.node(node), row(node), context, g, NOW, cached=cached)


def key_of(g: RunGraph, node: str) -> str:
    """The key a first run records: the one its dispatch carries."""
    out = start(g, node)
    if out.dispatches and g.node(node).fan_out:
        return str(out.updates[0].values["cache_key"])
    assert out.dispatches[0].cache_key is not None
    return out.dispatches[0].cache_key


def test_same_key_reuses_the_recorded_output_without_a_dispatch() -> None:
    g = graph()
    cached = Cached("parent", task_id="parent.a", output={"v": 1}, cache_key=key_of(g, "a"))
    out = start(g, "a", cached)
    assert out.dispatches == []
    [update] = out.updates
    assert update.values["status"] == "succeeded"
    assert update.values["output"] == {"v": 1}
    assert update.values["reused_from"] == "parent.a"
    assert [e.kind for e in out.events] == ["task.reused"]
    assert out.events[0].data["from_task"] == "parent.a"
    assert out.steps == [Settled("a")]


def test_a_changed_input_changes_the_key_and_the_task_runs() -> None:
    recorded = key_of(graph(x=1), "a")
    g = graph(x=2)
    out = start(g, "a", Cached("parent", task_id="parent.a", output={"v": 1}, cache_key=recorded))
    assert [d.node_id for d in out.dispatches] == ["a"]
    assert out.dispatches[0].cache_key not in (None, recorded)
    assert not any(e.kind == "task.reused" for e in out.events)


def test_a_claim_checked_output_is_reused_by_reference() -> None:
    g = graph()
    cached = Cached("parent", task_id="parent.a", output_ref="runs/p/x.json", cache_key=None)
    [update] = start(g, "a", cached).updates
    assert update.values["output"] is None
    assert update.values["output_ref"] == "runs/p/x.json"


def test_an_output_replaced_by_hand_is_taken_as_is() -> None:
    g = graph()
    out = start(g, "a", Cached("override", output={"v": 42}))
    assert out.dispatches == []
    assert out.updates[0].values["output"] == {"v": 42}
    assert out.events[0].data["source"] == "override"


def test_a_fan_out_task_is_reused_whole_under_the_key_of_all_its_items() -> None:
    g = graph()
    recorded = key_of(g, "fan")
    out = start(g, "fan", Cached("parent", task_id="parent.fan", output=[{"i": 1}, {"i": 2}],
                                 cache_key=recorded))  # fmt: skip
    assert out.new_tasks == []
    assert out.dispatches == []
    assert out.updates[0].values["output"] == [{"i": 1}, {"i": 2}]


def test_an_agent_override_changes_the_key_and_travels_with_the_dispatch() -> None:
    plain = key_of(graph(), "ask")
    override = {"system_prompt": "Be terse.", "model": "local:other"}
    g = graph({"overrides": {"ask": override}})
    out = start(g, "ask", Cached("parent", task_id="parent.ask", output="hi", cache_key=plain))
    [dispatch] = out.dispatches
    assert dispatch.overrides == override
    assert dispatch.cache_key != plain


def test_keys_ignore_retry_and_timeout_but_not_the_pinned_agent() -> None:
    g = graph()
    retried = RunGraph.build(
        RUN,
        {**SPEC, "tasks": [{**SPEC["tasks"][0], "retry": {"max_attempts": 5}, "timeout_s": 9}]},
        {"x": 1},
    )
    assert key_of(retried, "a") == key_of(g, "a")
    other_version = RunGraph.build(
        RUN, {**SPEC, "tasks": [{**SPEC["tasks"][2], "agent": "helper@2"}]}, {"x": 1}
    )
    assert key_of(other_version, "ask") != key_of(g, "ask")

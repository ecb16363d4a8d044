"""The static side: which results a task reads, and what a fallback waits for."""

from __future__ import annotations

import pytest
from cadenza_orchestrator import OrchestratorSettings, RunGraph, task_id_for

pytestmark = pytest.mark.unit

SPEC = {
    "name": "g",
    "inputs": {"pick": {"type": "string", "default": "a"}},
    "tasks": [
        {"id": "a", "tool": "transform", "with": {}, "on_failure": "fb"},
        {"id": "b", "tool": "transform", "needs": ["a"], "with": {"x": "${{ tasks.a.output }}"}},
        {
            "id": "c",
            "tool": "transform",
            "needs": ["a", "b"],
            "with": {"x": "${{ tasks[inputs.pick] }}"},
        },
        {
            "id": "d",
            "tool": "transform",
            "needs": ["b"],
            "when": "tasks['b'].status == 'succeeded'",
        },
        {"id": "e", "tool": "transform", "needs": ["b"], "on_failure": "fb"},
        {"id": "fb", "tool": "transform", "fallback": True, "with": {"e": "${{ len(tasks) }}"}},
    ],
    "output": "${{ tasks.d.output }}",
}


def test_reads_are_static_references_or_every_visible_task() -> None:
    graph = RunGraph.build("r1", SPEC, {})
    assert graph.inputs == {"pick": "a"}
    assert graph.reads("a") == frozenset()
    assert graph.reads("b") == {"a"}
    assert graph.reads("c") == {"a", "b"}  # dynamic: every ancestor
    assert graph.reads("d") == {"b"}
    assert graph.reads("fb") == {"a", "b", "e"}  # dynamic, fallback: triggers + ancestors
    assert graph.output_tasks() == {"d"}
    assert graph.roots == ["a"]
    assert graph.prerequisites("fb") == ("a", "e")
    assert graph.node("b").dependants == ("c", "d", "e")


def test_a_fallback_waits_for_triggers_not_downstream_of_a_failed_one() -> None:
    graph = RunGraph.build("r1", SPEC, {})
    assert graph.trigger_waits_on("fb", ["a"]) == ["a"]  # e needs b needs a: blocked
    assert graph.trigger_waits_on("fb", ["e"]) == ["a", "e"]
    assert graph.trigger_waits_on("fb", []) == ["a", "e"]


def test_task_ids_are_deterministic() -> None:
    assert task_id_for("run", "node") == "run.node"
    assert task_id_for("run", "node", 7) == "run.node.7"


def test_settings_read_the_shared_claim_check_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENZA_CLAIM_CHECK_BYTES", "1024")
    monkeypatch.setenv("CADENZA_ORCHESTRATOR_MAX_DISPATCHES", "7")
    settings = OrchestratorSettings()
    assert (settings.claim_check_bytes, settings.max_dispatches) == (1024, 7)
    assert OrchestratorSettings(claim_check_bytes=5).claim_check_bytes == 5

"""What a new run's plan.requested carries (cadenza_runtime.plan_requested): the whole row
when it was written to PostgreSQL and replays nothing, its documents in the key order the
row reads back in; otherwise only the spec and inputs, and the orchestrator reads the row."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cadenza_runtime import plan_requested

pytestmark = pytest.mark.unit

SPEC = {"name": "w", "tasks": [{"tool": "noop", "id": "a", "with": {"zeta": 1, "b": 2}}]}
INPUTS = {"second": 1, "a": {"yy": 1, "x": 2}}
BUDGET = {"max_cost_usd": 1.0, "on_exceeded": "fail"}


def plan(**overrides: Any) -> Any:
    values: dict[str, Any] = {
        "run_id": "r1",
        "workflow_name": "w",
        "workflow_version": 3,
        "spec": SPEC,
        "inputs": INPUTS,
        "budget": BUDGET,
        "replay": None,
        "row_version": 0,
    }
    return plan_requested(**(values | overrides))


def test_a_new_run_written_to_postgresql_travels_whole_in_jsonb_key_order() -> None:
    carried = plan()
    assert carried.row_version == 0
    assert carried.budget == BUDGET
    assert carried.spec == SPEC  # the same documents …
    assert carried.inputs == INPUTS
    # … with every object's keys as jsonb orders them: shorter first, then bytewise.
    assert list(carried.spec) == ["name", "tasks"]
    assert list(carried.spec["tasks"][0]) == ["id", "tool", "with"]
    assert list(carried.spec["tasks"][0]["with"]) == ["b", "zeta"]
    assert json.dumps(carried.inputs) == '{"a": {"x": 2, "yy": 1}, "second": 1}'
    assert list(carried.budget) == ["on_exceeded", "max_cost_usd"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"row_version": None},  # not on PostgreSQL: the orchestrator reads its row anyway
        {"replay": {"parent_run_id": "p", "reuse": [], "outputs": {}, "overrides": {}}},
    ],
    ids=["no-row-version", "replay"],
)
def test_otherwise_the_row_is_read(overrides: dict[str, Any]) -> None:
    bare = plan(**overrides)
    assert bare.row_version is None
    assert bare.budget is None
    assert json.dumps(bare.spec) == json.dumps(SPEC)  # as sent
    assert json.dumps(bare.inputs) == json.dumps(INPUTS)

"""resolve_inputs: defaults, required inputs, types and unknown inputs."""

from __future__ import annotations

from typing import Any

import pytest
from cadenza_workflow import (
    SpecValidationError,
    WorkflowSpec,
    coerce_input,
    parse_spec,
    resolve_inputs,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def spec() -> WorkflowSpec:
    return parse_spec(
        {
            "name": "inputs",
            "inputs": {
                "amount": {"type": "number", "default": 10},
                "count": {"type": "integer"},
                "items": {"type": "array", "required": True},
                "label": {"type": "string", "required": False},
                "opts": {"type": "object", "default": {"a": [1]}},
                "flag": {"type": "boolean", "default": False},
                "anything": {"required": False},
                "maybe": {"type": "string", "default": None},
            },
            "tasks": [{"id": "t", "tool": "transform"}],
        }
    )


def test_defaults_and_optional_inputs(spec: WorkflowSpec) -> None:
    resolved = resolve_inputs(spec, {"count": 3.0, "items": (1, 2)})
    assert resolved == {
        "amount": 10,
        "count": 3,
        "items": [1, 2],
        "label": None,
        "opts": {"a": [1]},
        "flag": False,
        "anything": None,
        "maybe": None,
    }
    assert isinstance(resolved["count"], int)
    resolved["opts"]["a"].append(2)  # defaults are copied, not shared
    assert resolve_inputs(spec, {"count": 1, "items": []})["opts"] == {"a": [1]}


def test_given_values_win(spec: WorkflowSpec) -> None:
    resolved = resolve_inputs(
        spec, {"amount": 7, "count": 1, "items": ["x"], "flag": True, "anything": {"k": None}}
    )
    assert resolved["amount"] == 7  # an integer is a number
    assert resolved["flag"] is True
    assert resolved["anything"] == {"k": None}


@pytest.mark.parametrize(
    ("given", "code", "field", "fragment"),
    [
        (
            {"items": []},
            "missing_input",
            "inputs.count",
            "required input 'count' (integer) is missing",
        ),
        (
            {"count": 1},
            "missing_input",
            "inputs.items",
            "required input 'items' (array) is missing",
        ),
        (
            {"count": True, "items": []},
            "input_type",
            "inputs.count",
            "must be an integer, got boolean",
        ),
        (
            {"count": 2.5, "items": []},
            "input_type",
            "inputs.count",
            "must be an integer, got number 2.5",
        ),
        ({"count": "3", "items": []}, "input_type", "inputs.count", "got string"),
        (
            {"count": 1, "items": [], "amount": "1"},
            "input_type",
            "inputs.amount",
            "must be a number",
        ),
        ({"count": 1, "items": [], "amount": False}, "input_type", "inputs.amount", "got boolean"),
        (
            {"count": 1, "items": [], "amount": float("nan")},
            "input_type",
            "inputs.amount",
            "number",
        ),
        ({"count": 1, "items": {}}, "input_type", "inputs.items", "must be an array, got object"),
        ({"count": 1, "items": [], "opts": []}, "input_type", "inputs.opts", "must be an object"),
        ({"count": 1, "items": [], "flag": 1}, "input_type", "inputs.flag", "must be a boolean"),
        ({"count": 1, "items": [], "label": None}, "input_type", "inputs.label", "got null"),
        (
            {"count": 1, "items": [], "amont": 1},
            "unknown_input",
            "inputs.amont",
            "unknown input 'amont'",
        ),
    ],
)
def test_bad_inputs(
    spec: WorkflowSpec, given: dict[str, Any], code: str, field: str, fragment: str
) -> None:
    with pytest.raises(SpecValidationError) as info:
        resolve_inputs(spec, given)
    (error,) = info.value.errors
    assert (error.code, error.field, error.task) == (code, field, None)
    assert fragment in error.message
    assert field in error.message


def test_all_input_problems_at_once(spec: WorkflowSpec) -> None:
    with pytest.raises(SpecValidationError) as info:
        resolve_inputs(spec, {"count": "x", "extra": 1})
    assert sorted(info.value.codes()) == ["input_type", "missing_input", "unknown_input"]


def test_no_inputs_declared() -> None:
    spec = parse_spec({"name": "n", "tasks": [{"id": "t", "tool": "transform"}]})
    assert resolve_inputs(spec, None) == {}
    with pytest.raises(SpecValidationError, match=r"unknown input 'x' \(declared: none\)"):
        resolve_inputs(spec, {"x": 1})


@pytest.mark.parametrize(
    ("value", "type_", "ok"),
    [
        (1, "integer", True),
        (1.0, "integer", True),
        (True, "integer", False),
        (1, "number", True),
        (1.5, "number", True),
        (True, "number", False),
        (float("inf"), "number", False),
        ("s", "string", True),
        (1, "string", False),
        ({"a": 1}, "object", True),
        ({1: 1}, "object", False),
        ([], "array", True),
        (None, None, True),
    ],
)
def test_coerce_input(value: Any, type_: Any, ok: bool) -> None:
    assert coerce_input(value, type_)[0] is ok

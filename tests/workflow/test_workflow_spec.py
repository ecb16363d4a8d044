"""Good specs, document formats, React Flow import, the JSON Schema and retry policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cadenza_workflow import (
    RetryPolicy,
    SpecValidationError,
    TaskSpec,
    WorkflowSpec,
    build_context,
    evaluate_condition,
    evaluate_for_each,
    load_spec,
    parse_spec,
    render,
    resolve_inputs,
    topological_order,
    validate_spec,
    workflow_json_schema,
)

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WORKER_TOOLS = {"transform", "http_request", "sleep", "flaky"}


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("name", ["hello.yaml", "retry.yaml"])
def test_examples_parse_and_validate(name: str) -> None:
    spec = load_spec((EXAMPLES / name).read_text(), "application/yaml", WORKER_TOOLS)
    assert spec.tasks
    assert {t.tool for t in spec.tasks} <= WORKER_TOOLS
    assert sorted(topological_order(spec)) == sorted(spec.task_ids)


def _run_transform_only(spec: WorkflowSpec, inputs: dict[str, Any]) -> dict[str, Any]:
    """A tiny in-test interpreter for transform-only workflows (output = rendered params)."""
    resolved = resolve_inputs(spec, inputs)
    results: dict[str, dict[str, Any]] = {}
    for tid in topological_order(spec):
        task = spec.task(tid)
        ctx = build_context(inputs=resolved, tasks=results, run_id="run-1")
        skipped_need = any(results[n]["status"] == "skipped" for n in task.needs)
        if task.fallback or (skipped_need and not task.run_if_skipped):
            results[tid] = {"status": "skipped", "output": None}
        elif task.for_each is not None:
            outputs = []
            for i, item in enumerate(evaluate_for_each(task.for_each, ctx)):
                ictx = build_context(inputs=resolved, tasks=results, run_id="r", item=item, index=i)
                outputs.append(
                    render(task.with_, ictx) if evaluate_condition(task.when, ictx) else None
                )
            results[tid] = {"status": "succeeded", "output": outputs}
        elif evaluate_condition(task.when, ctx):
            results[tid] = {"status": "succeeded", "output": render(task.with_, ctx)}
        else:
            results[tid] = {"status": "skipped", "output": None}
    return {
        "tasks": results,
        "output": render(spec.output, build_context(inputs=resolved, tasks=results, run_id="r")),
    }


def test_hello_example_semantics() -> None:
    spec = parse_spec((EXAMPLES / "hello.yaml").read_text())
    assert topological_order(spec) == ["prepare", "price_line", "flag_review", "summary"]
    big = _run_transform_only(spec, {})
    assert big["output"] == {"customer": "Ada Lovelace", "total": 148.0, "needs_review": True}
    assert [p["total"] for p in big["tasks"]["price_line"]["output"]] == [19.0, 120, 9.0]
    small = _run_transform_only(spec, {"customer": "grace hopper", "review_threshold": 500})
    assert small["tasks"]["flag_review"]["status"] == "skipped"
    assert small["output"] == {"customer": "Grace Hopper", "total": 148.0, "needs_review": False}


def test_retry_example_shape() -> None:
    spec = parse_spec((EXAMPLES / "retry.yaml").read_text())
    charge = spec.task("charge_card")
    assert charge.tool == "flaky"
    assert charge.with_["failures"] == 2
    assert charge.on_failure == "queue_for_manual"
    assert spec.task("queue_for_manual").fallback is True
    assert charge.retry.max_attempts == 3


# --------------------------------------------------------------------------- documents

MINIMAL = {"name": "minimal", "tasks": [{"id": "only", "tool": "transform"}]}


def test_defaults() -> None:
    spec = parse_spec(MINIMAL)
    task = spec.tasks[0]
    assert task.kind == "tool"
    assert task.retry == RetryPolicy(max_attempts=3)
    assert task.timeout_s == 300
    assert task.with_ == {}
    assert task.needs == []
    assert (task.when, task.for_each, task.on_failure) == (None, None, None)
    assert (task.fallback, task.run_if_skipped) == (False, False)
    assert spec.inputs == {}
    assert spec.output is None


def test_agent_kind_is_inferred() -> None:
    spec = load_spec(
        {"name": "a", "tasks": [{"id": "think", "agent": "researcher", "prompt": "hi"}]}
    )
    assert spec.tasks[0].kind == "agent"


@pytest.mark.parametrize(
    ("text", "content_type"),
    [
        (json.dumps(MINIMAL), None),
        (json.dumps(MINIMAL), "application/json; charset=utf-8"),
        (json.dumps(MINIMAL).encode(), "application/json"),
        ("name: minimal\ntasks:\n  - id: only\n    tool: transform\n", None),
        ("name: minimal\ntasks: [{id: only, tool: transform}]\n", "application/yaml"),
        ("{name: minimal, tasks: [{id: only, tool: transform}]}", None),  # YAML flow style
    ],
)
def test_parse_yaml_and_json(text: str | bytes, content_type: str | None) -> None:
    assert parse_spec(text, content_type).to_dict() == {
        "name": "minimal",
        "tasks": [{"id": "only", "kind": "tool", "tool": "transform"}],
    }


def test_json_syntax_error_with_json_content_type() -> None:
    with pytest.raises(SpecValidationError) as info:
        parse_spec('{"name": "x",}', "application/json")
    assert info.value.errors[0].code == "invalid_syntax"
    assert "JSON syntax error at line 1" in info.value.errors[0].message


def test_duplicate_json_key() -> None:
    with pytest.raises(SpecValidationError, match="duplicate key 'name'"):
        parse_spec('{"name": "x", "name": "y", "tasks": []}', "application/json")


def test_yaml_is_read_yaml_1_2_style() -> None:
    spec = parse_spec(
        "name: y\ntasks:\n  - id: a\n    tool: transform\n"
        "    with: {on: yes, date: 2024-01-02, flag: true, off: no}\n"
    )
    assert spec.tasks[0].with_ == {"on": "yes", "date": "2024-01-02", "flag": True, "off": "no"}


def test_dollar_schema_key_is_ignored() -> None:
    spec = parse_spec({"$schema": "https://example.test/workflow.json", **MINIMAL})
    assert spec.name == "minimal"


def test_to_dict_round_trips() -> None:
    spec = parse_spec((EXAMPLES / "hello.yaml").read_text())
    data = spec.to_dict()
    assert "with" in data["tasks"][0]
    assert "with_" not in data["tasks"][0]
    assert parse_spec(data) == spec
    assert parse_spec(json.dumps(data)) == spec


def test_with_must_be_spelled_with() -> None:
    with pytest.raises(SpecValidationError) as info:
        parse_spec({"name": "x", "tasks": [{"id": "a", "tool": "t", "with_": {}}]})
    assert info.value.codes() == ["unknown_field"]


def test_task_lookup() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.task("only").id == "only"
    with pytest.raises(KeyError):
        spec.task("nope")


def test_fallback_may_read_the_failed_task() -> None:
    load_spec(
        {
            "name": "fb",
            "tasks": [
                {"id": "a", "tool": "transform"},
                {"id": "b", "tool": "flaky", "needs": ["a"], "on_failure": "rescue"},
                {
                    "id": "rescue",
                    "tool": "transform",
                    "fallback": True,
                    "with": {"why": "${{ tasks.b.error }}", "from_a": "${{ tasks.a.output }}"},
                },
                {"id": "after", "tool": "transform", "needs": ["rescue"], "run_if_skipped": True},
            ],
            "output": "${{ tasks.rescue.status }}",
        }
    )


# --------------------------------------------------------------------------- React Flow

REACT_FLOW: dict[str, Any] = {
    "data": {"name": "from-the-canvas", "inputs": {"url": {"type": "string"}}},
    "nodes": [
        {
            "id": "fetch",
            "type": "default",
            "position": {"x": 0, "y": 0},
            "data": {
                "label": "Fetch the page",
                "kind": "tool",
                "tool": "http_request",
                "with": {"url": "${{ inputs.url }}"},
            },
        },
        {
            "id": "n2",
            "position": {"x": 0, "y": 100},
            "data": {
                "id": "parse",
                "tool": "transform",
                "with": {"body": "${{ tasks.fetch.output.body }}"},
            },
        },
        {
            "id": "n3",
            "data": {
                "id": "rescue",
                "tool": "transform",
                "with": {"err": "${{ tasks.fetch.error }}"},
            },
        },
        {"id": "note-1", "type": "note", "data": {"label": "remember to add auth"}},
    ],
    "edges": [
        {"id": "e1", "source": "fetch", "target": "n2"},
        {"id": "e2", "source": "fetch", "target": "n3", "sourceHandle": "on_failure"},
        {"id": "e3", "source": "note-1", "target": "fetch"},
    ],
    "viewport": {"x": 0, "y": 0, "zoom": 1},
}


def test_react_flow_conversion() -> None:
    spec = load_spec(REACT_FLOW, known_tools=WORKER_TOOLS)
    assert spec.name == "from-the-canvas"
    assert spec.task_ids == ["fetch", "parse", "rescue"]
    fetch = spec.task("fetch")
    assert fetch.description == "Fetch the page"
    assert fetch.on_failure == "rescue"
    assert spec.task("parse").needs == ["fetch"]
    assert spec.task("rescue").fallback is True
    assert topological_order(spec) == ["fetch", "parse", "rescue"]
    # the input document is not modified
    assert "needs" not in REACT_FLOW["nodes"][1]["data"]


def test_react_flow_from_json_text_with_top_level_name() -> None:
    doc = {
        "name": "rf",
        "nodes": [
            {"id": "a", "data": {"tool": "transform"}},
            {"id": "b", "data": {"tool": "transform", "needs": ["a"]}},
        ],
        "edges": [{"source": "a", "target": "b"}],
    }
    spec = parse_spec(json.dumps(doc))
    assert spec.task("b").needs == ["a"]


def test_react_flow_cycle_is_reported() -> None:
    doc = {
        "name": "rf",
        "nodes": [{"id": "a", "data": {"tool": "t"}}, {"id": "b", "data": {"tool": "t"}}],
        "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
    }
    with pytest.raises(SpecValidationError) as info:
        load_spec(doc)
    assert info.value.codes() == ["cycle"]
    assert "a → b → a" in info.value.errors[0].message


def test_react_flow_bad_edges_and_nodes() -> None:
    doc = {
        "name": "rf",
        "nodes": [{"id": "a", "data": {"tool": "t"}}, {"data": {}}, {"id": "a", "data": {}}],
        "edges": [{"source": "a", "target": "ghost"}],
    }
    with pytest.raises(SpecValidationError) as info:
        parse_spec(doc)
    assert [e.field for e in info.value.errors] == ["nodes[1]", "nodes[2].id", "edges[0].target"]
    assert "no node with id 'ghost'" in info.value.errors[2].message


def test_react_flow_node_ids_must_be_task_ids() -> None:
    doc = {"name": "rf", "nodes": [{"id": "1", "data": {"tool": "t"}}], "edges": []}
    with pytest.raises(SpecValidationError) as info:
        parse_spec(doc)
    assert info.value.errors[0].field == "tasks[0].id"
    assert "'1'" in info.value.errors[0].message


# --------------------------------------------------------------------------- JSON Schema


def _walk_properties(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = [("", {"properties": schema["properties"]})]
    found += [(name, d) for name, d in schema.get("$defs", {}).items()]
    return [
        (f"{owner}.{prop}", spec)
        for owner, d in found
        for prop, spec in d.get("properties", {}).items()
    ]


def test_json_schema() -> None:
    schema = workflow_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "urn:cadenza:schema:workflow:v1"
    assert workflow_json_schema("https://api.example/v1/schemas/workflow.json")["$id"].startswith(
        "https://"
    )
    assert schema["title"] == "Cadenza workflow"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "tasks"}
    task = schema["$defs"]["TaskSpec"]
    task_fields = {f.alias or name for name, f in TaskSpec.model_fields.items()}
    assert set(task["properties"]) == task_fields
    assert {"id", "kind", "tool", "agent", "prompt", "with", "needs", "when", "for_each"} <= set(
        task["properties"]
    )
    assert {"on_failure", "fallback", "run_if_skipped", "retry", "timeout_s"} <= set(
        task["properties"]
    )
    assert task["additionalProperties"] is False
    assert task["properties"]["id"]["pattern"] == "^[a-z][a-z0-9_]{0,62}$"
    assert set(schema["$defs"]["RetryPolicy"]["properties"]) == {
        "max_attempts",
        "initial_backoff_s",
        "max_backoff_s",
        "multiplier",
        "jitter",
    }
    missing = [path for path, prop in _walk_properties(schema) if not prop.get("description")]
    assert missing == []
    json.dumps(schema)  # serialisable


# --------------------------------------------------------------------------- retry


def test_retry_delays() -> None:
    policy = RetryPolicy(initial_backoff_s=0.5, max_backoff_s=3, multiplier=2, jitter=False)
    assert [policy.delay_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3, 3]
    jittered = RetryPolicy(initial_backoff_s=1, jitter=True)
    assert jittered.delay_s(1, rand=lambda: 0.0) == 0.5
    assert jittered.delay_s(1, rand=lambda: 1.0) == 1.0


def test_retry_bounds_are_checked() -> None:
    with pytest.raises(SpecValidationError) as info:
        parse_spec(
            {
                "name": "r",
                "tasks": [
                    {"id": "a", "tool": "t", "retry": {"initial_backoff_s": 10, "max_backoff_s": 1}}
                ],
            }
        )
    error = info.value.errors[0]
    assert (error.field, error.task) == ("tasks[0].retry", "a")
    assert "max_backoff_s must be greater than or equal to initial_backoff_s" in error.message


def test_validate_spec_accepts_a_model() -> None:
    validate_spec(parse_spec(MINIMAL), known_tools={"transform"})


# --------------------------------------------------------------------------- docs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"


def _doc_blocks(lang: str) -> list[str]:
    parts = DOCS.read_text().split(f"```{lang}\n")[1:]
    return [p.split("```", 1)[0] for p in parts]


def test_documented_workflows_are_valid() -> None:
    yaml_docs = [b for b in _doc_blocks("yaml") if b.startswith("name:")]
    json_docs = _doc_blocks("json")
    assert len(yaml_docs) >= 3
    assert len(json_docs) == 1
    for block in yaml_docs:
        load_spec(block, known_tools=WORKER_TOOLS)
    rf = load_spec(json_docs[0], known_tools=WORKER_TOOLS)
    assert rf.task("fetch").on_failure == "rescue"
    hello = next(parse_spec(b) for b in yaml_docs if b.startswith("name: hello"))
    assert _run_transform_only(hello, {})["output"] == {"customer": "Ada Lovelace", "total": 139.0}
    skipped = _run_transform_only(hello, {"review_threshold": 500})
    assert skipped["tasks"]["flag_review"]["status"] == "skipped"
    assert skipped["tasks"]["summary"]["status"] == "succeeded"

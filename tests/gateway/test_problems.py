"""Every bad spec, input or request is a 4xx problem naming what is wrong (task + field)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)
pytestmark = unit_only

PROBLEM = "application/problem+json"
T = "urn:cadenza:problem:"

# (case, YAML document, status, problem type, code, field, task, text in the message)
BAD_SPECS = [
    (
        "cycle",
        "name: x\ntasks:\n - {id: a, tool: noop, needs: [b]}\n - {id: b, tool: noop, needs: [a]}\n",
        422,
        "invalid-workflow",
        "cycle",
        "tasks[0].needs[0]",
        "a",
        "a → b → a",
    ),
    (
        "unknown need",
        "name: x\ntasks:\n - {id: fetch, tool: noop}\n"
        " - {id: report, tool: noop, needs: [fecth]}\n",
        422,
        "invalid-workflow",
        "unknown_need",
        "tasks[1].needs[0]",
        "report",
        "did you mean 'fetch'",
    ),
    (
        "unreachable fallback",
        "name: x\ntasks:\n - {id: a, tool: noop}\n - {id: spare, tool: noop, fallback: true}\n",
        422,
        "invalid-workflow",
        "unreachable",
        "tasks[1].fallback",
        "spare",
        "never runs",
    ),
    (
        "duplicate id",
        "name: x\ntasks:\n - {id: a, tool: noop}\n - {id: a, tool: noop}\n",
        422,
        "invalid-workflow",
        "duplicate_id",
        "tasks[1].id",
        "a",
        "already used",
    ),
    (
        "invalid expression",
        "name: x\ntasks:\n - {id: a, tool: transform, with: {x: '${{ inputs.a + }}'}}\n",
        422,
        "invalid-workflow",
        "invalid_expression",
        "tasks[0].with.x",
        "a",
        "invalid expression",
    ),
    (
        "name outside its context",
        "name: x\ntasks:\n - {id: a, tool: noop, when: item > 1}\n",
        422,
        "invalid-workflow",
        "unknown_name",
        "tasks[0].when",
        "a",
        "for_each",
    ),
    (
        "non-ancestor reference",
        "name: x\ntasks:\n - {id: a, tool: noop}\n"
        " - {id: b, tool: transform, with: {v: '${{ tasks.a.output }}'}}\n",
        422,
        "invalid-workflow",
        "invalid_reference",
        "tasks[1].with.v",
        "b",
        "add it to needs",
    ),
    (
        "unknown tool",
        "name: x\ntasks:\n - {id: a, tool: nosuch}\n",
        422,
        "invalid-workflow",
        "unknown_tool",
        "tasks[0].tool",
        "a",
        "unknown tool 'nosuch'",
    ),
    (
        "unknown field",
        "name: x\ntasks:\n - {id: a, tool: noop, nedds: []}\n",
        422,
        "invalid-workflow",
        "unknown_field",
        "tasks[0].nedds",
        "a",
        "did you mean 'needs'",
    ),
    (
        "missing tool",
        "name: x\ntasks:\n - {id: a}\n",
        422,
        "invalid-workflow",
        "missing_field",
        "tasks[0].tool",
        "a",
        "needs 'tool'",
    ),
    (
        "missing name",
        "tasks:\n - {id: a, tool: noop}\n",
        422,
        "invalid-workflow",
        "missing_field",
        "name",
        None,
        "required",
    ),
    (
        "bad input default",
        "name: x\ninputs: {n: {type: integer, default: two}}\ntasks: [{id: a, tool: noop}]\n",
        422,
        "invalid-workflow",
        "input_type",
        "inputs.n.default",
        None,
        "integer",
    ),
    (
        # A version is a 32-bit column: found by schemathesis as a 500 from the agent lookup.
        "agent version out of range",
        "name: x\nagents: {calc: 116829762666308120346624}\ntasks: [{id: a, tool: noop}]\n",
        422,
        "invalid-workflow",
        "invalid_field",
        "agents.calc",
        None,
        "less than or equal to 2147483647",
    ),
    ("YAML syntax", "name: [\n", 400, "malformed-body", "invalid_syntax", "", None, "line 2"),
    (
        "duplicate key",
        "name: x\nname: y\ntasks: []\n",
        400,
        "malformed-body",
        "invalid_syntax",
        "",
        None,
        "duplicate key 'name'",
    ),
    (
        "not a mapping",
        "- just\n- a list\n",
        400,
        "malformed-body",
        "invalid_syntax",
        "",
        None,
        "mapping",
    ),
]


def assert_problem(
    resp: httpx.Response,
    status: int,
    ptype: str,
    *,
    code: str | None = None,
    field: str | None = None,
    task: str | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["type"] == T + ptype
    assert body["status"] == status
    assert body["title"]
    assert body["instance"] == resp.request.url.path
    assert body["request_id"] == resp.headers["x-request-id"]
    if code is not None:
        matching = [e for e in body["errors"] if e["code"] == code and e["field"] == field]
        assert matching, body["errors"]
        error = matching[0]
        assert error["task"] == task
        if text is not None:
            assert text in error["message"], error["message"]
        if task is not None:
            assert f"task '{task}'" in error["message"]
    return dict(body)


@pytest.mark.parametrize(
    ("document", "status", "ptype", "code", "field", "task", "text"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_SPECS],
)
async def test_bad_specs_are_rejected_naming_task_and_field(
    client: httpx.AsyncClient,
    document: str,
    status: int,
    ptype: str,
    code: str,
    field: str,
    task: str | None,
    text: str,
) -> None:
    resp = await client.post(
        "/v1/workflows", content=document, headers={"Content-Type": "application/yaml"}
    )
    assert_problem(resp, status, ptype, code=code, field=field, task=task, text=text)
    assert (await client.get("/v1/workflows")).json()["items"] == []  # nothing half-created


async def test_every_problem_in_a_spec_is_reported_at_once(client: httpx.AsyncClient) -> None:
    doc = "name: x\ntasks:\n - {id: a, tool: nosuch, needs: [zz]}\n - {id: a, tool: noop}\n"
    resp = await client.post(
        "/v1/workflows", content=doc, headers={"Content-Type": "application/yaml"}
    )
    codes = {e["code"] for e in assert_problem(resp, 422, "invalid-workflow")["errors"]}
    assert {"unknown_tool", "unknown_need", "duplicate_id"} <= codes


INPUTS_YAML = """\
name: order
inputs:
  amount: {type: number}
  items: {type: array, default: []}
tasks: [{id: a, tool: noop}]
"""

# (case, inputs, code, field, text)
BAD_INPUTS = [
    ("missing", {}, "missing_input", "inputs.amount", "required input 'amount'"),
    ("wrong type", {"amount": "ten"}, "input_type", "inputs.amount", "must be a number"),
    ("boolean is not a number", {"amount": True}, "input_type", "inputs.amount", "number"),
    ("wrong array type", {"amount": 1, "items": {"a": 1}}, "input_type", "inputs.items", "array"),
    ("unknown", {"amount": 1, "amuont": 2}, "unknown_input", "inputs.amuont", "declared"),
]


@pytest.mark.parametrize(
    ("inputs", "code", "field", "text"), [pytest.param(*c[1:], id=c[0]) for c in BAD_INPUTS]
)
async def test_bad_inputs_are_rejected_naming_the_input(
    client: httpx.AsyncClient, register, inputs: dict[str, Any], code: str, field: str, text: str
) -> None:
    await register(INPUTS_YAML)
    resp = await client.post("/v1/runs", json={"workflow": "order", "inputs": inputs})
    assert_problem(resp, 422, "invalid-inputs", code=code, field=field, text=text)
    assert (await client.get("/v1/runs")).json()["items"] == []


async def test_non_finite_numbers_in_inputs_are_rejected(
    client: httpx.AsyncClient, register
) -> None:
    await register("name: any\ninputs: {v: {}}\ntasks: [{id: a, tool: noop}]\n")
    body = '{"workflow": "any", "inputs": {"v": [1, NaN]}}'
    resp = await client.post("/v1/runs", content=body, headers={"Content-Type": "application/json"})
    # Refused for every body before any route reads it (body_values.py), naming the field.
    assert_problem(resp, 422, "invalid-request", code="non_finite_number", field="inputs.v[1]")


# (case, JSON body, status, problem type, code, field, task)
BAD_RUN_REQUESTS = [
    (
        "neither workflow nor spec",
        {"inputs": {}},
        422,
        "invalid-request",
        "invalid_field",
        "",
        None,
    ),
    (
        "both workflow and spec",
        {"workflow": "order", "spec": {"name": "x"}},
        422,
        "invalid-request",
        "invalid_field",
        "",
        None,
    ),
    (
        "bad workflow reference",
        {"workflow": "Order Form@x"},
        422,
        "invalid-request",
        "invalid_field",
        "workflow",
        None,
    ),
    (
        "unknown body field",
        {"workflow": "order", "input": {}},
        422,
        "invalid-request",
        "unknown_field",
        "input",
        None,
    ),
    (
        "inputs not an object",
        {"workflow": "order", "inputs": [1]},
        422,
        "invalid-request",
        "invalid_field",
        "inputs",
        None,
    ),
    (
        "inline spec with a cycle",
        {"spec": {"name": "x", "tasks": [{"id": "a", "tool": "noop", "needs": ["a"]}]}},
        422,
        "invalid-workflow",
        "self_dependency",
        "spec.tasks[0].needs[0]",
        "a",
    ),
    (
        "inline YAML that does not parse",
        {"spec": "name: ["},
        422,
        "invalid-workflow",
        "invalid_syntax",
        "spec",
        None,
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "ptype", "code", "field", "task"),
    [pytest.param(*c[1:], id=c[0]) for c in BAD_RUN_REQUESTS],
)
async def test_bad_run_requests_are_rejected_naming_the_field(
    client: httpx.AsyncClient,
    register,
    body: dict[str, Any],
    status: int,
    ptype: str,
    code: str,
    field: str,
    task: str | None,
) -> None:
    await register(INPUTS_YAML)
    resp = await client.post("/v1/runs", json=body)
    assert_problem(resp, status, ptype, code=code, field=field, task=task)
    assert (await client.get("/v1/runs")).json()["items"] == []


async def test_unknown_workflow_or_version_is_404(client: httpx.AsyncClient, register) -> None:
    await register(INPUTS_YAML)
    for ref in ["nope", "order@7"]:
        resp = await client.post("/v1/runs", json={"workflow": ref, "inputs": {"amount": 1}})
        assert_problem(resp, 404, "workflow-not-found")


async def test_unknown_run_is_404(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/v1/runs/nope"),
        ("GET", "/v1/runs/nope/status"),
        ("POST", "/v1/runs/nope/cancel"),
    ]:
        assert_problem(await client.request(method, path), 404, "run-not-found")


async def test_unsupported_media_types_are_415(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/workflows",
        content="name: x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(resp, 415, "unsupported-media-type")
    resp = await client.post(
        "/v1/runs", content='{"workflow": "x"}', headers={"Content-Type": "text/plain"}
    )
    assert_problem(resp, 415, "unsupported-media-type")


async def test_ids_past_their_column_are_refused_by_name(client: httpx.AsyncClient) -> None:
    """A dead letter id is a BIGINT: 2**63 was a 500 from the database (or SQLite's
    driver), and 20 digits were called "not decimal digits"."""
    for letter_id, text in (
        (str(2**63), "less than or equal to 9223372036854775807"),
        ("9" * 20, "at most 19 digits"),
    ):
        for method, suffix in (("GET", ""), ("POST", "/discard"), ("POST", "/replay")):
            body = assert_problem(
                await client.request(method, f"/v1/dead-letters/{letter_id}{suffix}"),
                422,
                "invalid-request",
                code="invalid_field",
                field="path.letter_id",
            )
            assert text in body["detail"], body
    # The largest id is a plain unknown letter.
    resp = await client.get(f"/v1/dead-letters/{2**63 - 1}")
    assert resp.status_code == 404, resp.text


async def test_parameter_errors_are_problems_too(client: httpx.AsyncClient) -> None:
    body = assert_problem(
        await client.get("/v1/runs", params={"limit": 0}),
        422,
        "invalid-request",
        code="invalid_field",
        field="query.limit",
    )
    assert "greater than or equal to 1" in body["detail"]
    assert_problem(
        await client.get("/v1/runs", params={"status": "sleeping"}),
        422,
        "invalid-request",
        code="invalid_field",
        field="query.status",
    )
    assert_problem(
        await client.get("/v1/runs", params={"cursor": "garbage!"}),
        400,
        "invalid-cursor",
        code="invalid_field",
        field="query.cursor",
    )
    assert_problem(
        await client.post(
            "/v1/runs", json={"workflow": "x"}, headers={"Idempotency-Key": "x" * 300}
        ),
        422,
        "invalid-request",
        field="header.Idempotency-Key",
        code="invalid_field",
    )


async def test_plain_http_errors_are_about_blank_problems(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/nothing-here")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["type"] == "about:blank"
    assert resp.json()["title"] == "Not Found"
    resp = await client.delete("/v1/workflows")
    assert resp.status_code == 405
    assert resp.headers["content-type"] == PROBLEM
    assert resp.headers["allow"]

"""JSON numbers come back exactly as sent (issue 11): what a client stores (workflow and
agent specs, run inputs, dataset records) is read back with the same numbers. PostgreSQL
JSONB turned `1e308` into a 309-digit integer and `-0.0` into `0.0`; the documents are
stored as `json` since migration 0012_json_numbers. Runs on both stacks."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

# Each written as it would appear in a request body; each must come back as the same
# number of the same type (a float stays a float, an integer stays an integer).
NUMBERS_JSON = (
    '{"huge": 1e308, "tiny": 5e-324, "negative_zero": -0.0, "big_int": 12345678901234567890,'
    ' "third": 0.3333333333333333, "one": 1.0, "minus": -7}'
)


def _same_numbers(got: Any) -> None:
    """``got`` holds NUMBERS_JSON's values with the same types and bits."""
    sent = json.loads(NUMBERS_JSON)
    assert set(got) == set(sent), got
    for key, value in sent.items():
        assert type(got[key]) is type(value), (key, got[key])
        # repr distinguishes -0.0 from 0.0 and 1e308 from its 309-digit integer
        assert repr(got[key]) == repr(value), (key, got[key])


def _embed(document: str) -> str:
    return document.replace("NUMBERS", NUMBERS_JSON)


async def _register(client: httpx.AsyncClient, path: str, document: str) -> dict[str, Any]:
    """POST ``document`` (NUMBERS filled in) as JSON text; the stored spec, read back."""
    created = await client.post(
        path, content=_embed(document), headers={"content-type": "application/json"}
    )
    assert created.status_code == 201, created.text
    stored = await client.get(created.headers["location"])
    return dict(stored.json()["spec"])


async def test_numbers_survive_in_a_workflow_spec_and_the_run_inputs(
    client: httpx.AsyncClient,
) -> None:
    spec = await _register(
        client,
        "/v1/workflows",
        '{"name": "numbers", "inputs": {"x": {"type": "number"}},'
        ' "tasks": [{"id": "a", "tool": "transform", "with": NUMBERS}]}',
    )
    _same_numbers(spec["tasks"][0]["with"])

    for x, expected in (("1e308", "1e+308"), ("-0.0", "-0.0")):
        run = await client.post(
            "/v1/runs",
            content='{"workflow": "numbers", "inputs": {"x": ' + x + "}}",
            headers={"content-type": "application/json"},
        )
        assert run.status_code == 201, run.text
        assert repr(run.json()["inputs"]["x"]) == repr(float(expected)), run.json()
        got = (await client.get(run.headers["location"])).json()
        assert repr(got["inputs"]["x"]) == repr(float(expected)), got["inputs"]


async def test_numbers_survive_in_an_agent_spec(client: httpx.AsyncClient) -> None:
    spec = await _register(
        client,
        "/v1/agents",
        '{"name": "numbers", "system_prompt": "Be brief.", "model": "local:smollm2-135m",'
        ' "output_schema": {"type": "object", "examples": [NUMBERS]}}',
    )
    _same_numbers(spec["output_schema"]["examples"][0])


async def test_numbers_survive_in_dataset_records(client: httpx.AsyncClient) -> None:
    body = _embed('{"records": [{"key": "r1", "data": NUMBERS}]}')
    put = await client.put(
        "/v1/datasets/numbers/records", content=body, headers={"content-type": "application/json"}
    )
    assert put.status_code == 200, put.text
    record = (await client.get("/v1/datasets/numbers/records/r1")).json()
    _same_numbers(record["data"])


JSON, YAML = "application/json", "application/yaml"


@pytest.mark.parametrize(
    ("method", "path", "content_type", "body", "field"),
    [
        (
            "POST",
            "/v1/workflows",
            JSON,
            '{"name": "inf", "tasks": [{"id": "a", "tool": "transform", "with": {"x": 1e400}}]}',
            "tasks[0].with.x",
        ),
        (
            "POST",
            "/v1/workflows",
            YAML,
            "name: inf\ntasks: [{id: a, tool: transform, with: {x: .inf}}]\n",
            "tasks[0].with.x",
        ),
        (
            "POST",
            "/v1/agents",
            JSON,
            '{"name": "inf", "system_prompt": "Be brief.", "model": "local:smollm2-135m",'
            ' "output_schema": {"type": "object", "examples": [NaN]}}',
            "output_schema.examples[0]",
        ),
        (
            "POST",
            "/v1/runs",
            JSON,
            '{"spec": {"name": "inf", "tasks": [{"id": "a", "tool": "transform",'
            ' "with": {"x": 1}}]}, "inputs": {"x": -1e400}}',
            "inputs.x",
        ),
        (
            "PUT",
            "/v1/datasets/inf/records",
            JSON,
            '{"records": [{"key": "r", "data": {"x": -Infinity}}]}',
            "records[0].data.x",
        ),
    ],
)
async def test_a_number_that_is_not_a_finite_double_is_a_422_naming_the_field(
    client: httpx.AsyncClient, method: str, path: str, content_type: str, body: str, field: str
) -> None:
    """`1e400` parses as infinity, and NaN/Infinity are no JSON: none of it can be read
    back, so it is refused (a workflow spec used to store it as `null`)."""
    resp = await client.request(method, path, content=body, headers={"content-type": content_type})
    assert resp.status_code == 422, resp.text
    errors = resp.json()["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [(field, "non_finite_number")]

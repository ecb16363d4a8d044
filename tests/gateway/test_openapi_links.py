"""The OpenAPI document's links (issue 11): each creating answer leads to the operations on
what it created, every link names a real operation, fills each of its path parameters, and
takes the value from a field the answer (or the request) really has. schemathesis' stateful
phase (tests/e2e/test_api_schemathesis.py) follows them against the real stack."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def _has_pointer(document: dict[str, Any], schema: dict[str, Any], pointer: str) -> bool:
    for part in pointer.strip("/").split("/"):
        schema = _resolve(document, schema)
        if part.isdigit():
            schema = schema.get("items", {})
        else:
            if part not in schema.get("properties", {}):
                return False
            schema = schema["properties"][part]
    return True


@unit_only
async def test_every_link_leads_to_a_real_operation_with_real_values(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    operations = {
        op["operationId"]: op
        for methods in document["paths"].values()
        for op in methods.values()
        if isinstance(op, dict) and "operationId" in op
    }
    seen = 0
    for methods in document["paths"].values():
        for operation in methods.values():
            for status, response in operation.get("responses", {}).items():
                for name, link in response.get("links", {}).items():
                    seen += 1
                    target = operations[link["operationId"]]
                    path_params = {
                        p["name"] for p in target.get("parameters", []) if p["in"] == "path"
                    }
                    assert path_params <= set(link["parameters"]), (name, path_params)
                    for expression in link["parameters"].values():
                        source, _, pointer = expression.partition("#")
                        if source == "$response.body":
                            body = response["content"]["application/json"]["schema"]
                        else:
                            assert source == "$request.body", expression
                            content = operation["requestBody"]["content"]
                            body = next(iter(content.values()))["schema"]
                        assert _has_pointer(document, body, pointer), (name, status, expression)
    assert seen >= 40, seen


@unit_only
async def test_a_created_run_links_to_reading_cancelling_and_forking_it(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    links = document["paths"]["/v1/runs"]["post"]["responses"]["201"]["links"]
    assert {"GetRun", "CancelRun", "ResumeRun", "ForkRun", "RerunRun"} <= set(links)
    assert links["GetRun"]["parameters"] == {"run_id": "$response.body#/id"}
    read = document["paths"]["/v1/runs/{run_id}"]["get"]["responses"]["200"]["links"]
    assert read["GetFirstTaskCalls"]["parameters"] == {
        "run_id": "$response.body#/id",
        "task_id": "$response.body#/tasks/0/node_id",
    }
    versions = document["paths"]["/v1/workflows"]["post"]["responses"]["201"]["links"]
    assert versions["GetWorkflowVersion"]["parameters"] == {
        "name": "$response.body#/name",
        "version": "$response.body#/version",
    }

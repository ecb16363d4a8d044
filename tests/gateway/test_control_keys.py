"""Control characters in mapping keys (issue 11): `{"a\\u0001b": 1}` in run inputs, spec and
agent mappings, dataset records, document metadata and search filters is a JSON key like any
other. Each is stored and read back exactly, or refused with a 422 problem naming the field;
never a 500. On both stacks: PostgreSQL's jsonb escapes them, SQLite's JSON does not."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

KEYS = ["a\u0001b", "\u001f", "tab\there", "del\u007f", "c1\u0085"]


async def _ok(resp: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert resp.status_code in statuses, resp.text
    return dict(resp.json())


def _mapping(key: str) -> dict[str, Any]:
    return {key: {key: [1, key]}}


@pytest.mark.parametrize("key", KEYS)
async def test_run_inputs_and_spec_mappings_read_back_exactly(
    client: httpx.AsyncClient, key: str
) -> None:
    spec = {
        "name": "ctl",
        "inputs": {"cfg": {"type": "object", "default": _mapping(key)}},
        "tasks": [{"id": "a", "tool": "transform", "with": _mapping(key)}],
    }
    registered = await _ok(await client.post("/v1/workflows", json=spec), 201)
    assert registered["spec"]["tasks"][0]["with"] == _mapping(key)
    latest = await _ok(await client.get("/v1/workflows/ctl"), 200)
    assert latest["spec"]["inputs"]["cfg"]["default"] == _mapping(key)
    run = await _ok(
        await client.post("/v1/runs", json={"workflow": "ctl", "inputs": {"cfg": _mapping(key)}}),
        201,
    )
    assert run["inputs"] == {"cfg": _mapping(key)}
    read = await _ok(await client.get(f"/v1/runs/{run['id']}"), 200)
    assert read["inputs"] == {"cfg": _mapping(key)}
    inline = await client.post("/v1/runs", json={"spec": spec, "inputs": {key: 1}})
    problem = await _ok(inline, 422)
    assert any(key in e["field"] or e["field"] == "inputs" for e in problem["errors"]), problem


@pytest.mark.parametrize("key", KEYS)
async def test_agent_mappings_read_back_exactly(client: httpx.AsyncClient, key: str) -> None:
    agent = {
        "name": "ctl",
        "system_prompt": "answer",
        "model": "local:m",
        "output_schema": {"type": "object", "properties": {key: {"type": "string"}}},
    }
    created = await _ok(await client.post("/v1/agents", json=agent), 201)
    assert created["spec"]["output_schema"]["properties"] == {key: {"type": "string"}}
    read = await _ok(await client.get("/v1/agents/ctl"), 200)
    assert read["spec"]["output_schema"] == agent["output_schema"]


@pytest.mark.parametrize("key", KEYS)
async def test_dataset_records_read_back_exactly(client: httpx.AsyncClient, key: str) -> None:
    body = {"records": [{"key": "k", "data": _mapping(key)}]}
    await _ok(await client.put("/v1/datasets/d/records", json=body), 200)
    record = await _ok(await client.get("/v1/datasets/d/records/k"), 200)
    assert record["data"] == _mapping(key)


@pytest.mark.parametrize("key", KEYS)
async def test_document_metadata_and_search_filters(client: httpx.AsyncClient, key: str) -> None:
    await _ok(await client.post("/v1/collections", json={"name": "c1"}), 201)
    uploaded = await client.post(
        "/v1/collections/c1/documents",
        files={"file": ("a.txt", b"hello world", "text/plain")},
        data={"metadata": json.dumps({key: "v"})},
    )
    document = await _ok(uploaded, 201, 202)
    read = await _ok(await client.get(f"/v1/collections/c1/documents/{document['id']}"), 200)
    assert read["metadata"] == {key: "v"}
    search = await client.post(
        "/v1/collections/c1/search", json={"query": "hello", "filters": {key: "v"}}
    )
    await _ok(search, 200)


@pytest.mark.parametrize(
    ("method", "path", "raw", "field"),
    [
        ("PUT", "/v1/datasets/d/records",
         b'{"records": [{"key": "k", "data": {"a\\ud800b": 1}}]}', "records[0].data.a\\ud800b"),
        ("PUT", "/v1/datasets/d/records",
         b'{"records": [{"key": "k", "data": {"a": "\\udfff"}}]}', "records[0].data.a"),
        ("POST", "/v1/runs",
         b'{"spec": {"name": "s", "tasks": [{"id": "a", "tool": "transform", '
         b'"with": {"\\ud83d": 1}}]}}', "spec.tasks[0].with.\\ud83d"),
        ("POST", "/v1/workflows",
         b'name: w\ntasks: [{id: a, tool: transform, with: {x: "\\ud800"}}]\n', "tasks[0].with.x"),
    ],
)  # fmt: skip
async def test_a_lone_surrogate_is_a_422_naming_the_field(
    client: httpx.AsyncClient, method: str, path: str, raw: bytes, field: str
) -> None:
    """A JSON escape of half a UTF-16 pair is not a character: it cannot be stored in
    PostgreSQL nor encoded in an answer (it was a 500). A whole pair is one character."""
    kind = "application/yaml" if path == "/v1/workflows" else "application/json"
    resp = await client.request(method, path, content=raw, headers={"content-type": kind})
    problem = await _ok(resp, 422)
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [(field, "lone_surrogate")]
    pair = await client.put(
        "/v1/datasets/d/records",
        content=b'{"records": [{"key": "k", "data": {"\\ud83d\\ude00": "\\ud83d\\ude00"}}]}',
        headers={"content-type": "application/json"},
    )
    await _ok(pair, 200)
    record = await _ok(await client.get("/v1/datasets/d/records/k"), 200)
    assert record["data"] == {"\U0001f600": "\U0001f600"}


@pytest.mark.parametrize(
    ("metadata", "field", "code"),
    [
        ('{"a\\u0000": 1}', "metadata.a\u0000", "nul_character"),
        ('{"a": "\\ud800"}', "metadata.a", "lone_surrogate"),
    ],
)
async def test_document_metadata_is_held_to_the_same_rules(
    client: httpx.AsyncClient, metadata: str, field: str, code: str
) -> None:
    """Metadata is a form field of a multipart upload, not a JSON body."""
    await _ok(await client.post("/v1/collections", json={"name": "c1"}), 201)
    uploaded = await client.post(
        "/v1/collections/c1/documents",
        files={"file": ("a.txt", b"hello world", "text/plain")},
        data={"metadata": metadata},
    )
    problem = await _ok(uploaded, 422)
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [(field, code)]

"""POST/GET /v1/agents: immutable versions, formats, validation problems, listing, schema."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cadenza_gateway import GatewaySettings
from cadenza_runtime import Resources
from cadenza_state import AgentRecord, AuditLogEntry
from jsonschema import Draft202012Validator
from sqlalchemy import select

CLASSIFIER_YAML = """\
name: payment-classifier
description: Classifies payment failures
role: classifier
system_prompt: You classify payment failures.
model: local:smollm2-135m
tools: [get_transaction, calculator]
max_iterations: 6
output_schema:
  type: object
  properties:
    category: {type: string}
  required: [category]
budget: {max_tokens: 20000, max_usd: 0.5}
"""

RegisterAgent = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def settings() -> GatewaySettings:
    # The scenario tools are not worker built-ins: the deployment lists them.
    return GatewaySettings(port=0, agent_tools=["get_transaction", "calculator"])


def agent_doc(name: str = "helper", **fields: Any) -> dict[str, Any]:
    return {"name": name, "system_prompt": "Be brief.", "model": "local:smollm2-135m", **fields}


@pytest_asyncio.fixture
async def register_agent(client: httpx.AsyncClient) -> RegisterAgent:
    """``await register_agent(doc_or_yaml)`` → the 201 body of POST /v1/agents."""

    async def post(document: dict[str, Any] | str, tenant: str = "default") -> dict[str, Any]:
        headers = {"X-Tenant-Id": tenant}
        if isinstance(document, str):
            resp = await client.post(
                "/v1/agents",
                content=document,
                headers={**headers, "Content-Type": "application/yaml"},
            )
        else:
            resp = await client.post("/v1/agents", json=document, headers=headers)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    return post


async def test_registering_a_name_again_creates_a_new_immutable_version(
    client: httpx.AsyncClient, register_agent: RegisterAgent, resources: Resources
) -> None:
    first = await register_agent(CLASSIFIER_YAML)
    assert (first["name"], first["version"]) == ("payment-classifier", 1)
    assert first["spec"]["temperature"] == 0.0  # defaults are stored with the version
    assert first["spec"]["handoffs"] == []
    second = await register_agent(CLASSIFIER_YAML.replace("max_iterations: 6", "max_iterations: 9"))
    assert second["version"] == 2

    latest = (await client.get("/v1/agents/payment-classifier")).json()
    assert (latest["version"], latest["spec"]["max_iterations"]) == (2, 9)
    v1 = (await client.get("/v1/agents/payment-classifier/versions/1")).json()
    assert v1["spec"]["max_iterations"] == 6  # version 1 is unchanged
    assert v1["spec"]["output_schema"]["required"] == ["category"]
    versions = (await client.get("/v1/agents/payment-classifier/versions")).json()["items"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["model"] == "local:smollm2-135m"
    assert versions[0]["role"] == "classifier"

    async with resources.sessions() as session:
        rows = (await session.scalars(select(AgentRecord).order_by(AgentRecord.version))).all()
        audit = (
            await session.scalars(
                select(AuditLogEntry.subject).where(AuditLogEntry.action == "agent.registered")
            )
        ).all()
    assert [(r.tenant_id, r.name, r.version) for r in rows] == [
        ("default", "payment-classifier", 1),
        ("default", "payment-classifier", 2),
    ]
    assert rows[0].spec == v1["spec"]  # what the worker loads is what the API shows
    assert sorted(audit) == ["agent:payment-classifier@1", "agent:payment-classifier@2"]


async def test_location_header_and_json_body(client: httpx.AsyncClient) -> None:
    resp = await client.post("/v1/agents", json=agent_doc())
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"] == "/v1/agents/helper/versions/1"
    assert (await client.get(resp.headers["location"])).json()["spec"]["name"] == "helper"


async def test_concurrent_registrations_get_distinct_consecutive_versions(
    client: httpx.AsyncClient,
) -> None:
    async def post(i: int) -> httpx.Response:
        return await client.post("/v1/agents", json=agent_doc(description=f"variant {i}"))

    responses = await asyncio.gather(*(post(i) for i in range(5)))
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    assert sorted(r.json()["version"] for r in responses) == [1, 2, 3, 4, 5]


async def test_validation_problems_name_each_field(client: httpx.AsyncClient) -> None:
    doc = {
        "name": "bad",
        "model": "gpt-4o",
        "temperature": 3,
        "tools": ["calculator", "calculator", "no_such_tool"],
        "output_schema": {"type": "strin"},
    }
    resp = await client.post("/v1/agents", json=doc)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["type"] == "urn:cadenza:problem:invalid-agent"
    assert problem["title"] == "Invalid agent spec"
    fields = {e["field"]: e["code"] for e in problem["errors"]}
    assert fields == {
        "system_prompt": "missing_field",
        "model": "invalid_field",
        "temperature": "invalid_field",
    }  # shape first; the semantic checks run on a well-shaped document
    resp = await client.post(
        "/v1/agents", json={**doc, "model": "local:m", "temperature": 0, "system_prompt": "x"}
    )
    fields = {e["field"]: e["code"] for e in resp.json()["errors"]}
    assert fields == {
        "tools[1]": "invalid_field",
        "tools[2]": "unknown_tool",
        "output_schema.type": "invalid_field",
    }
    unknown = next(e for e in resp.json()["errors"] if e["field"] == "tools[2]")
    assert "available:" in unknown["message"]
    assert "calculator" in unknown["message"]


async def test_handoff_targets_must_be_registered_for_the_tenant(
    client: httpx.AsyncClient, register_agent: RegisterAgent
) -> None:
    await register_agent(agent_doc("tier2-support"), tenant="other")
    resp = await client.post(
        "/v1/agents", json=agent_doc("tier1-support", handoffs=["tier2-support"])
    )
    assert resp.status_code == 422
    (error,) = resp.json()["errors"]
    assert (error["field"], error["code"]) == ("handoffs[0]", "unknown_agent")
    assert "tier2-support" in error["message"]

    await register_agent(agent_doc("tier2-support"))
    created = await register_agent(agent_doc("tier1-support", handoffs=["tier2-support"]))
    assert created["spec"]["handoffs"] == ["tier2-support"]

    resp = await client.post("/v1/agents", json=agent_doc("loop", handoffs=["loop"]))
    assert resp.json()["errors"][0]["code"] == "self_dependency"


async def test_malformed_and_wrong_media_type_bodies(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/agents", content="name: [", headers={"Content-Type": "application/yaml"}
    )
    assert resp.status_code == 400
    assert resp.json()["type"] == "urn:cadenza:problem:malformed-body"
    resp = await client.post("/v1/agents", content="x", headers={"Content-Type": "text/plain"})
    assert resp.status_code == 415
    assert "cannot read an agent" in resp.json()["detail"]
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdef", "bcdefg", strict=True)
    )
    resp = await client.post(
        "/v1/agents", content=bomb, headers={"Content-Type": "application/yaml"}
    )
    assert resp.status_code == 400
    assert "aliases expand" in resp.json()["detail"]


async def test_agents_are_per_tenant(
    client: httpx.AsyncClient, register_agent: RegisterAgent
) -> None:
    await register_agent(agent_doc("secret"), tenant="acme")
    resp = await client.get("/v1/agents/secret")
    assert resp.status_code == 404
    assert resp.json()["type"] == "urn:cadenza:problem:agent-not-found"
    assert (await client.get("/v1/agents/secret/versions")).status_code == 404
    assert (await client.get("/v1/agents/secret/versions/1")).status_code == 404
    mine = await client.get("/v1/agents/secret", headers={"X-Tenant-Id": "acme"})
    assert mine.json()["version"] == 1


async def test_listing_is_paginated_by_name_with_the_latest_versions(
    client: httpx.AsyncClient, register_agent: RegisterAgent
) -> None:
    for name in ["c", "a", "b", "a"]:
        await register_agent(agent_doc(name, description=f"agent {name}"))
    page = (await client.get("/v1/agents", params={"limit": 2})).json()
    assert [(i["name"], i["version"]) for i in page["items"]] == [("a", 2), ("b", 1)]
    assert page["items"][0]["description"] == "agent a"
    rest = (await client.get("/v1/agents", params={"cursor": page["next_cursor"]})).json()
    assert [i["name"] for i in rest["items"]] == ["c"]
    assert rest["next_cursor"] is None
    bad = await client.get("/v1/agents", params={"cursor": "nope"})
    assert bad.status_code == 400


async def test_agent_json_schema_is_published(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/schemas/agent.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/schema+json"
    schema = resp.json()
    assert schema["$id"] == "http://gateway.test/v1/schemas/agent.json"
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    assert not list(validator.iter_errors(agent_doc(tools=["calculator"])))
    assert list(validator.iter_errors(agent_doc(max_iterations=0)))
    openapi = (await client.get("/openapi.json")).json()
    assert "application/yaml" in openapi["paths"]["/v1/agents"]["post"]["requestBody"]["content"]
    assert json.dumps(openapi).count("/v1/agents/{name}/versions/{version}") == 1

"""/v1/triggers, POST /v1/events and /v1/schedules through the gateway (both stacks)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from cadenza_runtime import Resources
from support.auth import issue_key

PROBLEM = "application/problem+json"
PAYMENT_YAML = """\
name: payment-check
inputs:
  amount: {type: number}
  account: {type: string}
tasks:
  - id: echo
    tool: transform
    with:
      amount: "${{ inputs.amount }}"
output: "${{ tasks.echo.output.amount }}"
"""

TRIGGER: dict[str, Any] = {
    "name": "big-payments",
    "topics": ["upstream.payments"],
    "filter": {"type": "com.acme.payment.created", "expression": "data.amount > 100"},
    "workflow": "payment-check",
    "inputs": {"amount": "${{ data.amount }}", "account": "${{ event.subject }}"},
}


def binary(event_id: str, data: dict[str, Any], **extra: str) -> dict[str, Any]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/payments",
        "ce-type": "com.acme.payment.created",
        "ce-subject": "acct-7",
        "content-type": "application/json",
        **extra,
    }
    return {"headers": headers, "content": json.dumps(data)}


def structured(event_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "/payments",
        "type": "com.acme.payment.created",
        "subject": "acct-9",
        "data": data,
    }


async def _setup(
    client: httpx.AsyncClient, register: Callable[..., Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    await register(PAYMENT_YAML)
    resp = await client.post("/v1/triggers", json=TRIGGER)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def test_register_trigger_versions_enable_disable_delete(
    client: httpx.AsyncClient, register: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    first = await _setup(client, register)
    assert (first["version"], first["enabled"], first["tenant_id"]) == (1, True, "default")
    disabled = (await client.post("/v1/triggers/big-payments/disable")).json()
    assert (disabled["version"], disabled["enabled"]) == (2, False)
    assert (await client.get("/v1/triggers/big-payments")).json()["version"] == 2
    versions = (await client.get("/v1/triggers/big-payments/versions")).json()["items"]
    assert [v["version"] for v in versions] == [2, 1]
    listed = (await client.get("/v1/triggers")).json()["items"]
    assert [(t["name"], t["enabled"]) for t in listed] == [("big-payments", False)]
    # Another tenant sees nothing.
    other = await client.get("/v1/triggers", headers={"X-Tenant-Id": "acme"})
    assert other.json()["items"] == []
    assert (await client.delete("/v1/triggers/big-payments")).status_code == 204
    assert (await client.get("/v1/triggers/big-payments")).status_code == 404


async def test_bad_trigger_specs_are_422_naming_the_field(
    client: httpx.AsyncClient, register: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await register(PAYMENT_YAML)
    cases = {
        "workflow": {**TRIGGER, "workflow": "nope"},
        "filter.expression": {**TRIGGER, "filter": {"expression": "data.amount >"}},
        "inputs": {**TRIGGER, "inputs": {"amount": "${{ tasks.x.output }}"}},
        "topics": {**TRIGGER, "topics": ["bad topic!"]},
    }
    for field, body in cases.items():
        resp = await client.post("/v1/triggers", json=body)
        assert resp.status_code == 422, (field, resp.text)
        assert resp.headers["content-type"] == PROBLEM
        assert any(e["field"].startswith(field) for e in resp.json()["errors"]), (field, resp.text)


async def test_events_start_one_run_each_and_duplicates_start_none(
    client: httpx.AsyncClient, register: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await _setup(client, register)
    resp = await client.post("/v1/events", **binary("e-1", {"amount": 250}))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert (body["mode"], body["started"], body["duplicates"]) == ("binary", 1, 0)
    (outcome,) = body["events"][0]["runs"]
    assert outcome["trigger"] == "big-payments"
    run_id = outcome["run_id"]
    run = (await client.get(f"/v1/runs/{run_id}")).json()
    assert run["inputs"] == {"amount": 250, "account": "acct-7"}
    assert run["started_by"]["kind"] == "trigger"
    assert run["started_by"]["event_id"] == "e-1"
    assert run["started_by"]["via"] == "http"
    timeline = (await client.get(f"/v1/runs/{run_id}/timeline")).json()
    assert timeline["started_by"] == run["started_by"]

    again = await client.post("/v1/events", **binary("e-1", {"amount": 250}))
    assert again.status_code == 200
    assert again.json()["events"][0]["runs"] == [
        {"trigger": "big-payments", "run_id": run_id, "outcome": "duplicate"}
    ]
    # Below the filter's threshold: matched by no trigger, no run.
    small = await client.post("/v1/events", **binary("e-2", {"amount": 5}))
    assert (small.status_code, small.json()["events"][0]["runs"]) == (200, [])

    batch = [structured("s-1", {"amount": 300}), structured("s-2", {"amount": 400})]
    resp = await client.post(
        "/v1/events",
        content=json.dumps(batch),
        headers={"content-type": "application/cloudevents-batch+json"},
    )
    assert resp.status_code == 201, resp.text
    assert (resp.json()["mode"], resp.json()["started"]) == ("batch", 2)
    single = await client.post(
        "/v1/events",
        content=json.dumps(structured("s-2", {"amount": 400})),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert (single.json()["mode"], single.json()["duplicates"]) == ("structured", 1)
    runs = (await client.get("/v1/runs?workflow=payment-check")).json()["items"]
    assert len(runs) == 3
    assert all(r["started_by"]["trigger"] == "big-payments" for r in runs)


async def test_bad_events_are_problems_and_start_nothing(
    client: httpx.AsyncClient, register: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await _setup(client, register)
    garbage = await client.post(
        "/v1/events", content=b"\xff{", headers={"content-type": "application/cloudevents+json"}
    )
    assert (garbage.status_code, garbage.headers["content-type"]) == (400, PROBLEM)
    plain = await client.post("/v1/events", json={"amount": 1})
    assert plain.status_code == 415
    missing = await client.post(
        "/v1/events",
        content=json.dumps({"specversion": "1.0", "id": "x", "type": "t"}),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert missing.status_code == 400
    assert "source" in missing.json()["detail"]
    # The mapping gives a string where the workflow wants a number: 422 naming the trigger.
    bad = await client.post("/v1/events", **binary("e-9", {"amount": "lots"}))
    assert bad.status_code == 422, bad.text
    assert bad.json()["trigger"] == "big-payments"
    assert (await client.get("/v1/runs")).json()["items"] == []


async def test_disabled_triggers_and_other_tenants_get_no_events(
    client: httpx.AsyncClient, register: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await _setup(client, register)
    request = binary("e-1", {"amount": 500})
    request["headers"]["X-Tenant-Id"] = "acme"
    other = await client.post("/v1/events", **request)
    assert (other.status_code, other.json()["events"][0]["runs"]) == (200, [])
    await client.post("/v1/triggers/big-payments/disable")
    resp = await client.post("/v1/events", **binary("e-1", {"amount": 500}))
    assert (resp.status_code, resp.json()["events"][0]["runs"]) == (200, [])


async def test_events_need_the_events_write_scope(
    anonymous: httpx.AsyncClient, resources: Resources
) -> None:
    unauthenticated = await anonymous.post("/v1/events", **binary("e-1", {"amount": 1}))
    assert unauthenticated.status_code == 401
    reader = await issue_key(resources, "default", ["runs:write", "triggers:write"])
    resp = await anonymous.post(
        "/v1/events",
        content=json.dumps(structured("e", {})),
        headers={
            "content-type": "application/cloudevents+json",
            "Authorization": f"Bearer {reader}",
        },
    )
    assert resp.status_code == 403
    assert resp.json()["required_scopes"] == ["events:write"]


async def test_schedules_crud_pause_resume_and_next_fires(
    client: httpx.AsyncClient, register: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    await register(PAYMENT_YAML)
    spec = {
        "name": "nightly",
        "cron": "30 2 * * *",
        "timezone": "Europe/Paris",
        "workflow": "payment-check",
        "inputs": {"amount": 1, "account": "batch"},
        "overlap": "skip",
        "catch_up": "last",
    }
    resp = await client.post("/v1/schedules", json=spec)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert len(body["next_fires"]) == 5
    # 02:30 in Paris is 01:30 or 00:30 UTC depending on the season.
    assert all(f.endswith(("01:30:00Z", "00:30:00Z")) for f in body["next_fires"]), body
    assert body["next_fire_at"] == body["next_fires"][0]
    assert (await client.post("/v1/schedules", json=spec)).status_code == 409
    paused = (await client.post("/v1/schedules/nightly/pause")).json()
    assert (paused["paused"], paused["next_fires"]) == (True, [])
    resumed = (await client.post("/v1/schedules/nightly/resume")).json()
    assert resumed["paused"] is False
    assert len(resumed["next_fires"]) == 5
    assert [s["name"] for s in (await client.get("/v1/schedules")).json()["items"]] == ["nightly"]
    hourly = (await client.put("/v1/schedules/nightly", json={**spec, "cron": "0 * * * *"})).json()
    assert hourly["spec"]["cron"] == "0 * * * *"
    assert all(f.endswith(":00:00Z") for f in hourly["next_fires"])
    renamed = await client.put("/v1/schedules/nightly", json={**spec, "name": "other"})
    assert (renamed.status_code, renamed.json()["errors"][0]["field"]) == (422, "name")
    for field, bad in (("cron", "61 * * * *"), ("timezone", "Mars/Olympus")):
        resp = await client.post("/v1/schedules", json={**spec, "name": "x", field: bad})
        assert resp.status_code == 422
        assert resp.json()["errors"][0]["field"] == field
    assert (await client.delete("/v1/schedules/nightly")).status_code == 204
    assert (await client.get("/v1/schedules/nightly")).status_code == 404

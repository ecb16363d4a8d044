"""/v1/approvals and /v1/dead-letters: the inboxes operators answer (docs/guardrails.md).

Held calls and dead letters are seeded as the orchestrator writes them; the tests check
what an answer records (decision, audit, the command to the orchestrator on task.result),
what a replay publishes (the original record, through the outbox), scopes and tenancy."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from cadenza_events import Envelope, HoldResolved, Topic
from cadenza_runtime import Resources
from cadenza_state import (
    ApprovalRecord,
    AuditLogEntry,
    DeadLetterRecord,
    OutboxMessage,
    RunRecord,
    utcnow,
)
from sqlalchemy import select
from support import assert_eventually
from support.auth import issue_key
from support.stacks import hold_relay

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)


async def seed_hold(
    resources: Resources, *, kind: str = "approval", tenant: str = "default"
) -> ApprovalRecord:
    run_id = str(uuid.uuid4())
    async with resources.sessions() as session, session.begin():
        session.add(
            RunRecord(
                id=run_id,
                tenant_id=tenant,
                workflow_name="w",
                spec={"name": "w", "tasks": [{"id": "a", "tool": "http_request"}]},
                inputs={},
                status="running",
            )
        )
        await session.flush()
        hold = ApprovalRecord(
            id=str(uuid.uuid4()),
            tenant_id=tenant,
            run_id=run_id,
            task_id=f"{run_id}:a",
            node_id="a",
            attempt=1,
            call_index=0,
            kind=kind,
            status="pending",
            tool="http_request",
            arguments={"url": "https://shop.example/orders/7", "method": "DELETE"},
            reason="a duplicate",
            rule="http_request DELETE to a host not allowlisted (shop.example)",
            on_timeout="reject",
        )
        session.add(hold)
    return hold


async def test_approving_records_the_decision_audits_it_and_tells_the_orchestrator(
    client: httpx.AsyncClient,
    resources: Resources,
    events: Callable[[Topic], Awaitable[list[Envelope[Any]]]],
) -> None:
    got = await events(Topic.TASK_RESULT)
    hold = await seed_hold(resources)
    inbox = (await client.get("/v1/approvals", params={"status": "pending"})).json()
    assert [i["id"] for i in inbox["items"]] == [hold.id]
    assert inbox["items"][0]["arguments"]["method"] == "DELETE"

    resp = await client.post(f"/v1/approvals/{hold.id}/approve", json={"comment": "fine"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["status"], body["comment"]) == ("approved", "fine")
    assert body["decided_by"].startswith("key:")
    assert body["decided_at"]

    async def commanded() -> HoldResolved | None:
        answers = [e.payload for e in got if isinstance(e.payload, HoldResolved)]
        return answers[0] if answers else None

    command = await assert_eventually(commanded, timeout=30)
    assert (command.run_id, command.task_id, command.attempt) == (hold.run_id, hold.task_id, 1)
    assert (command.decision, command.kind, command.comment) == ("approved", "approval", "fine")
    async with resources.sessions() as session:
        audit = (
            await session.scalars(
                select(AuditLogEntry).where(AuditLogEntry.subject == f"approval:{hold.id}")
            )
        ).all()
    assert [(a.action, a.data and a.data["comment"]) for a in audit] == [
        ("approval.approved", "fine")
    ]
    assert (await client.get("/v1/approvals", params={"status": "pending"})).json()["items"] == []

    again = await client.post(f"/v1/approvals/{hold.id}/reject", json={})
    assert again.status_code == 409
    assert again.json()["type"].endswith("approval-answered")


@unit_only
async def test_answers_must_fit_the_kind_of_hold(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    in_doubt = await seed_hold(resources, kind="in_doubt")
    resp = await client.post(f"/v1/approvals/{in_doubt.id}/approve", json={})
    assert resp.status_code == 409
    assert resp.json()["type"].endswith("wrong-hold-kind")
    bad = await client.post(f"/v1/approvals/{in_doubt.id}/resolve", json={"outcome": "maybe"})
    assert bad.status_code == 422
    assert any(e["field"] == "outcome" for e in bad.json()["errors"]), bad.json()
    done = await client.post(
        f"/v1/approvals/{in_doubt.id}/resolve", json={"outcome": "done", "output": {"id": 9}}
    )
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["output"]) == ("done", {"id": 9})
    approval = await seed_hold(resources)
    wrong = await client.post(f"/v1/approvals/{approval.id}/resolve", json={"outcome": "retry"})
    assert wrong.status_code == 409


@unit_only
async def test_the_inbox_is_the_credential_tenant_and_needs_approvals_write(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, resources: Resources
) -> None:
    theirs = await seed_hold(resources, tenant="acme")
    assert (await client.get(f"/v1/approvals/{theirs.id}")).status_code == 404
    assert (await client.post(f"/v1/approvals/{theirs.id}/approve", json={})).status_code == 404
    assert (await client.get("/v1/approvals")).json()["items"] == []
    mine = (await client.get("/v1/approvals", headers={"X-Tenant-Id": "acme"})).json()
    assert [i["id"] for i in mine["items"]] == [theirs.id]

    reader = await issue_key(resources, "acme", ["runs:read"])
    denied = await anonymous.post(
        f"/v1/approvals/{theirs.id}/approve",
        json={},
        headers={"Authorization": f"Bearer {reader}"},
    )
    assert denied.status_code == 403
    approver = await issue_key(resources, "acme", ["approvals:write"])
    allowed = await anonymous.post(
        f"/v1/approvals/{theirs.id}/reject",
        json={"comment": "no"},
        headers={"Authorization": f"Bearer {approver}"},
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["status"] == "rejected"


async def seed_letter(
    resources: Resources, tenant: str = "default", offset: int = 42
) -> DeadLetterRecord:
    letter = DeadLetterRecord(
        tenant_id=tenant,
        original_topic="x.task.result",
        partition=1,
        offset=offset,
        consumer_group="x.cadenza-orchestrator",
        key="run-1",
        headers={"ce_type": "cadenza.task.result.v1", "ce_planid": "run-1"},
        value=b'{"run_id":"run-1","status":"succeeded"}',
        reason="ValueError: boom",
        error_code="ValueError",
        attempts=5,
        event_type="cadenza.task.result.v1",
        run_id="run-1",
        task_id="run-1:a",
        failed_at=utcnow(),
    )
    async with resources.sessions() as session, session.begin():
        session.add(letter)
    return letter


@unit_only
async def test_dead_letters_are_listed_replayed_once_and_discarded(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    resources: Resources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hold_relay(resources, monkeypatch)  # the replayed record stays staged, to be read
    letter = await seed_letter(resources)
    other = await seed_letter(resources, offset=43)
    listed = (await client.get("/v1/dead-letters", params={"run_id": "run-1"})).json()["items"]
    assert [i["id"] for i in listed] == [other.id, letter.id]
    first = listed[-1]
    assert (first["topic"], first["reason"], first["key"], first["task_id"]) == (
        "x.task.result",
        "ValueError: boom",
        "run-1",
        "run-1:a",
    )
    assert first["first_bytes"].startswith('{"run_id":"run-1"')

    resp = await client.post(f"/v1/dead-letters/{letter.id}/replay")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "replayed"
    async with resources.sessions() as session:
        staged = (
            await session.scalars(
                select(OutboxMessage).where(OutboxMessage.topic == "x.task.result")
            )
        ).all()
    # The original record goes back as it was: topic, key, headers and bytes.
    assert [(m.key, m.payload, dict(m.headers)) for m in staged] == [
        ("run-1", letter.value, letter.headers)
    ]
    assert (await client.post(f"/v1/dead-letters/{letter.id}/replay")).status_code == 409
    assert (await client.post(f"/v1/dead-letters/{letter.id}/discard")).status_code == 409

    gone = await client.post(f"/v1/dead-letters/{other.id}/discard")
    assert gone.json()["status"] == "discarded"
    pending = (await client.get("/v1/dead-letters", params={"status": "pending"})).json()
    assert pending["items"] == []

    assert (await client.get("/v1/dead-letters", headers={"X-Tenant-Id": "acme"})).json()[
        "items"
    ] == []
    approver = await issue_key(resources, "default", ["approvals:write", "runs:read"])
    denied = await anonymous.get(
        "/v1/dead-letters", headers={"Authorization": f"Bearer {approver}"}
    )
    assert denied.status_code == 403

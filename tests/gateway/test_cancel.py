"""POST /v1/runs/{id}/cancel (docs/api.md): the gateway stages a ``run.cancel_requested``
command for the orchestrator (the one writer of run state) and an audit row; it writes no
run or task state itself."""

from __future__ import annotations

import httpx
import pytest
from cadenza_events import PlanRequested, RunCancelRequested, Topic, decode
from cadenza_events.envelope import Message
from cadenza_runtime import Resources
from cadenza_state import AuditLogEntry, OutboxMessage, RunRecord
from sqlalchemy import select, update
from support.stacks import hold_relay


@pytest.fixture(autouse=True)
def _held(resources: Resources, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here reads the commands staged for the orchestrator (none runs)."""
    hold_relay(resources, monkeypatch)


async def commands(resources: Resources, run_id: str) -> list[object]:
    """The payloads staged on plan.requested for this run, in order."""
    async with resources.sessions() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.key == run_id,
                    OutboxMessage.topic == resources.registry.name(Topic.PLAN_REQUESTED),
                )
                .order_by(OutboxMessage.id)
            )
        ).all()
    return [
        decode(
            Message(
                r.topic,
                0,
                0,
                r.key.encode() if r.key else None,
                r.payload,
                tuple(r.kafka_headers()),
            )
        ).payload
        for r in rows
    ]


async def set_status(resources: Resources, run_id: str, status: str) -> None:
    async with resources.sessions() as session, session.begin():
        await session.execute(update(RunRecord).where(RunRecord.id == run_id).values(status=status))


async def test_cancel_stages_a_command_for_the_orchestrator_and_an_audit_row(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]
    await set_status(resources, run_id, "running")

    resp = await client.post(f"/v1/runs/{run_id}/cancel", json={"reason": "wrong inputs"})
    assert resp.status_code == 202, resp.text
    # The run as it stands: the orchestrator applies the cancel.
    assert resp.json()["status"] == "running"
    assert (await client.get(f"/v1/runs/{run_id}")).json()["status"] == "running"

    staged = await commands(resources, run_id)
    assert [type(p) for p in staged] == [PlanRequested, RunCancelRequested]
    cancel = staged[1]
    assert isinstance(cancel, RunCancelRequested)
    assert cancel.run_id == run_id
    assert cancel.reason == "wrong inputs"
    assert cancel.requested_by is not None
    assert cancel.requested_by.startswith("key:")

    async with resources.sessions() as session:
        audit = (
            await session.scalars(
                select(AuditLogEntry).where(AuditLogEntry.subject == f"run:{run_id}")
            )
        ).all()
    by_action = {a.action: a for a in audit}
    assert by_action["run.cancel_requested"].actor == cancel.requested_by
    assert by_action["run.cancel_requested"].data == {"reason": "wrong inputs"}


async def test_cancel_without_a_body_is_accepted(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]
    resp = await client.post(f"/v1/runs/{run_id}/cancel")
    assert resp.status_code == 202, resp.text
    staged = await commands(resources, run_id)
    assert isinstance(staged[-1], RunCancelRequested)
    assert staged[-1].reason is None


@pytest.mark.parametrize("stack", ["unit"], indirect=True)
@pytest.mark.parametrize(
    ("body", "field"), [({"reason": 5}, "reason"), ({"why": "x"}, "why")], ids=["type", "extra"]
)
async def test_a_bad_cancel_body_is_a_422_naming_the_field(
    client: httpx.AsyncClient, resources: Resources, register, body: object, field: str
) -> None:
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]
    resp = await client.post(f"/v1/runs/{run_id}/cancel", json=body)
    assert resp.status_code == 422, resp.text
    assert field in resp.text
    assert [type(p) for p in await commands(resources, run_id)] == [PlanRequested]


async def test_cancelling_a_finished_run_is_a_409_and_sends_nothing(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]
    await set_status(resources, run_id, "succeeded")
    resp = await client.post(f"/v1/runs/{run_id}/cancel")
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["type"] == "urn:cadenza:problem:run-finished"
    assert problem["run_status"] == "succeeded"
    assert [type(p) for p in await commands(resources, run_id)] == [PlanRequested]


async def test_cancelling_a_cancelled_run_is_a_409_that_resends_the_command(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    """The orchestrator sets the workers' stop marker again on a repeated cancel: a retry
    repairs a marker lost to a Redis outage."""
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]
    await set_status(resources, run_id, "cancelled")
    again = await client.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert again.json()["run_status"] == "cancelled"
    assert [type(p) for p in await commands(resources, run_id)] == [
        PlanRequested,
        RunCancelRequested,
    ]


async def test_cancelling_another_tenants_run_is_a_404(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]
    resp = await client.post(f"/v1/runs/{run_id}/cancel", headers={"X-Tenant-Id": "other"})
    assert resp.status_code == 404
    assert [type(p) for p in await commands(resources, run_id)] == [PlanRequested]

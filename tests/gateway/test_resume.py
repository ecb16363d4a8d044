"""POST /v1/runs/{id}/resume (docs/guardrails.md): a run paused by a budget is resumed by a
``run.resume_requested`` command the gateway stages for the orchestrator (the one writer of
run state), with an audit row; the gateway writes no run or task state itself."""

from __future__ import annotations

import httpx
import pytest
from cadenza_events import PlanRequested, RunResumeRequested
from cadenza_runtime import Resources
from cadenza_state import AuditLogEntry
from sqlalchemy import select
from support.stacks import hold_relay
from test_cancel import commands, set_status


@pytest.fixture(autouse=True)
def _held(resources: Resources, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here reads the commands staged for the orchestrator (none runs)."""
    hold_relay(resources, monkeypatch)


async def test_resume_stages_a_command_with_the_raised_limit_and_an_audit_row(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]
    await set_status(resources, run_id, "paused")

    body = {"reason": "approved more spend", "budget": {"max_tokens": 50_000}}
    resp = await client.post(f"/v1/runs/{run_id}/resume", json=body)
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "paused"  # the orchestrator applies the resume

    staged = await commands(resources, run_id)
    assert [type(p) for p in staged] == [PlanRequested, RunResumeRequested]
    command = staged[1]
    assert isinstance(command, RunResumeRequested)
    assert command.budget == {"max_tokens": 50_000}
    assert command.reason == "approved more spend"
    assert command.requested_by is not None
    assert command.requested_by.startswith("key:")
    async with resources.sessions() as session:
        audit = (
            await session.scalars(
                select(AuditLogEntry).where(
                    AuditLogEntry.subject == f"run:{run_id}",
                    AuditLogEntry.action == "run.resume_requested",
                )
            )
        ).one()
    assert audit.actor == command.requested_by
    assert audit.data == {"reason": "approved more spend", "budget": {"max_tokens": 50_000}}


async def test_resuming_a_run_that_is_not_paused_is_a_409_and_sends_nothing(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]
    await set_status(resources, run_id, "running")
    resp = await client.post(f"/v1/runs/{run_id}/resume")
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["type"] == "urn:cadenza:problem:run-not-paused"
    assert resp.json()["run_status"] == "running"
    assert [type(p) for p in await commands(resources, run_id)] == [PlanRequested]
    assert (await client.post("/v1/runs/no-such-run/resume")).status_code == 404


@pytest.mark.parametrize("stack", ["unit"], indirect=True)
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"budget": {"max_tokens": 0}}, "max_tokens"),
        ({"budget": {"max_usd": -1}}, "max_usd"),
        ({"budget": {"on_exceeded": "stop"}}, "on_exceeded"),
        ({"why": "x"}, "why"),
    ],
    ids=["tokens", "usd", "extra-budget-field", "extra"],
)
async def test_a_bad_resume_body_is_a_422_naming_the_field(
    client: httpx.AsyncClient, resources: Resources, register, body: object, field: str
) -> None:
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]
    await set_status(resources, run_id, "paused")
    resp = await client.post(f"/v1/runs/{run_id}/resume", json=body)
    assert resp.status_code == 422, resp.text
    assert field in resp.text
    assert [type(p) for p in await commands(resources, run_id)] == [PlanRequested]

"""POST/GET /v1/runs: creation (atomic with its events), the bus, views, status, listing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cadenza_events import PlanRequested, RunEvent, Topic
from cadenza_runtime import Resources
from cadenza_state import OutboxMessage, RunRecord, TaskRecord
from sqlalchemy import func, select, update
from support import assert_eventually

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)


async def outbox_rows(resources: Resources, key: str | None = None) -> list[OutboxMessage]:
    async with resources.sessions() as session:
        stmt = select(OutboxMessage).order_by(OutboxMessage.id)
        if key is not None:
            stmt = stmt.where(OutboxMessage.key == key)
        return list((await session.scalars(stmt)).all())


async def count_runs(resources: Resources) -> int:
    async with resources.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(RunRecord)) or 0)


async def test_run_is_created_with_its_plan_requested_event_in_one_transaction(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    resp = await client.post("/v1/runs", json={"workflow": "greet", "inputs": {"who": "ada"}})
    assert resp.status_code == 201, resp.text
    run = resp.json()
    assert resp.headers["location"] == f"/v1/runs/{run['id']}"
    assert run["status"] == "pending"
    assert run["workflow_name"] == "greet"
    assert run["workflow_version"] == 1
    assert run["inputs"] == {"who": "ada", "times": None}  # resolved: optional → null
    assert run["tenant_id"] == "default"
    assert run["tasks"] == []

    rows = await outbox_rows(resources, key=run["id"])
    topics = [r.topic for r in rows]
    assert topics == [
        resources.registry.name(Topic.PLAN_REQUESTED),
        resources.registry.name(Topic.RUN_EVENTS),
    ]
    async with resources.sessions() as session:
        stored = await session.get(RunRecord, run["id"])
    assert stored is not None
    assert stored.status == "pending"
    assert stored.spec["name"] == "greet"
    assert stored.inputs == {"who": "ada", "times": None}


async def test_run_appears_on_the_bus_as_a_decodable_plan_requested(
    client: httpx.AsyncClient, resources: Resources, register, events
) -> None:
    plans = await events(Topic.PLAN_REQUESTED)
    run_events = await events(Topic.RUN_EVENTS)
    await register(**{"X-Tenant-Id": "acme"})
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    resp = await client.post(
        "/v1/runs",
        json={"workflow": "greet@1", "inputs": {"who": "grace"}},
        headers={"X-Tenant-Id": "acme", "traceparent": traceparent},
    )
    assert resp.status_code == 201, resp.text
    run_id = resp.json()["id"]

    await assert_eventually(lambda: plans, message="plan.requested never arrived")
    (env,) = plans
    assert isinstance(env.payload, PlanRequested)
    assert env.plan_id == run_id
    assert env.tenant_id == "acme"
    assert env.payload.run_id == run_id
    assert env.payload.workflow_name == "greet"
    assert env.payload.workflow_version == 1
    assert env.payload.inputs == {"who": "grace", "times": None}
    assert env.payload.spec["tasks"][0]["id"] == "hello"
    # The request's trace continues through the event.
    assert env.traceparent is not None
    assert env.traceparent.split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"

    await assert_eventually(lambda: run_events, message="run.accepted never arrived")
    accepted = run_events[0].payload
    assert isinstance(accepted, RunEvent)
    assert (accepted.kind, accepted.run_id, accepted.status) == ("run.accepted", run_id, "pending")
    # Sent rows are deleted by the relay's next flush (the test stack flushes only when
    # asked, so that other tests can read what was staged).
    assert len(await outbox_rows(resources)) == 2

    async def deleted() -> bool:  # the send's ack may come just after the consumer's read
        await resources.relay.flush_deletes()
        return await outbox_rows(resources) == []

    await assert_eventually(deleted, message="the sent rows were never deleted")


@unit_only
async def test_a_failure_while_staging_events_leaves_no_run_behind(
    client: httpx.AsyncClient, resources: Resources, register, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register()
    # Run creation is shared by every way a run starts (cadenza_runtime.runs).
    import cadenza_runtime.runs as runs_crud

    async def failing_stage(*args: Any, **kwargs: Any) -> None:
        # The run row is in the transaction already (flushed first).
        raise RuntimeError("outbox write failed")

    monkeypatch.setattr(runs_crud, "stage_outbox", failing_stage)
    resp = await client.post("/v1/runs", json={"workflow": "greet"})
    assert resp.status_code == 500
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["type"] == "urn:cadenza:problem:internal-error"
    assert "RuntimeError" not in resp.text  # internals stay in the log
    assert await count_runs(resources) == 0
    assert await outbox_rows(resources) == []


@unit_only
async def test_inline_spec_runs_have_no_version(client: httpx.AsyncClient) -> None:
    spec = {
        "name": "adhoc",
        "inputs": {"n": {"type": "integer"}},
        "tasks": [{"id": "a", "tool": "transform", "with": {"v": "${{ inputs.n }}"}}],
    }
    resp = await client.post("/v1/runs", json={"spec": spec, "inputs": {"n": 3.0}})
    assert resp.status_code == 201, resp.text
    run = resp.json()
    assert (run["workflow_name"], run["workflow_version"]) == ("adhoc", None)
    assert run["inputs"] == {"n": 3}
    yaml_spec = "name: adhoc-yaml\ntasks: [{id: a, tool: noop}]\n"
    resp = await client.post("/v1/runs", json={"spec": yaml_spec})
    assert resp.status_code == 201, resp.text
    assert resp.json()["workflow_name"] == "adhoc-yaml"


@unit_only
async def test_a_run_uses_the_latest_version_unless_one_is_named(
    client: httpx.AsyncClient, register, greet_yaml: str
) -> None:
    await register(greet_yaml)
    await register(greet_yaml.replace("default: world", "default: moon"))
    latest = (await client.post("/v1/runs", json={"workflow": "greet"})).json()
    assert (latest["workflow_version"], latest["inputs"]["who"]) == (2, "moon")
    pinned = (await client.post("/v1/runs", json={"workflow": "greet@1"})).json()
    assert (pinned["workflow_version"], pinned["inputs"]["who"]) == (1, "world")


@unit_only
async def test_run_view_shows_every_task_from_postgres(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    spec = {
        "name": "fan",
        "tasks": [
            {"id": "prepare", "tool": "noop"},
            {"id": "each", "tool": "noop", "needs": ["prepare"], "for_each": [1, 2]},
        ],
    }
    run = (await client.post("/v1/runs", json={"spec": spec})).json()
    now = datetime.now(UTC)
    async with resources.sessions() as session, session.begin():
        # What the orchestrator and a worker would have written.
        session.add_all(
            [
                TaskRecord(
                    id=f"{run['id']}-each-1",
                    run_id=run["id"],
                    node_id="each",
                    item_index=1,
                    status="running",
                    attempt=1,
                    max_attempts=3,
                    worker_id="w1",
                    ready_at=now,
                    started_at=now,
                ),
                TaskRecord(
                    id=f"{run['id']}-each-0",
                    run_id=run["id"],
                    node_id="each",
                    item_index=0,
                    status="failed",
                    attempt=2,
                    max_attempts=3,
                    error={"code": "timeout", "message": "too slow"},
                    ready_at=now,
                    started_at=now,
                    finished_at=now,
                ),
                TaskRecord(
                    id=f"{run['id']}-prepare",
                    run_id=run["id"],
                    node_id="prepare",
                    status="succeeded",
                    attempt=1,
                    max_attempts=3,
                    output={"ok": True},
                    output_ref=None,
                    ready_at=now - timedelta(seconds=1),
                    started_at=now,
                    finished_at=now,
                ),
            ]
        )
        await session.execute(
            update(RunRecord).where(RunRecord.id == run["id"]).values(status="running")
        )
    view = (await client.get(f"/v1/runs/{run['id']}")).json()
    assert view["status"] == "running"
    assert [(t["node_id"], t["item_index"]) for t in view["tasks"]] == [
        ("prepare", None),
        ("each", 0),
        ("each", 1),
    ]
    prepare, each0, each1 = view["tasks"]
    assert prepare["output"] == {"ok": True}
    assert prepare["status"] == "succeeded"
    assert each0["error"] == {"code": "timeout", "message": "too slow"}
    assert each0["attempt"] == 2
    assert each1["worker_id"] == "w1"
    assert each1["finished_at"] is None
    assert each1["started_at"] is not None
    # Another tenant cannot see it.
    resp = await client.get(f"/v1/runs/{run['id']}", headers={"X-Tenant-Id": "other"})
    assert resp.status_code == 404


@unit_only
async def test_status_reads_redis_first_and_falls_back_to_postgres(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]
    status = (await client.get(f"/v1/runs/{run_id}/status")).json()
    assert status["status"] == "pending"
    assert status["source"] == "database"
    assert status["terminal"] is False

    await resources.hot.set_run_status(run_id, {"status": "succeeded", "tasks_done": 1}, 60)
    status = (await client.get(f"/v1/runs/{run_id}/status")).json()
    assert (status["status"], status["source"], status["terminal"]) == ("succeeded", "hot", True)
    assert status["details"] == {"tasks_done": "1"}

    # A hot status stamped with another tenant is never shown; that tenant sees a 404.
    await resources.hot.set_run_status(run_id, {"tenant_id": "default"}, 60)
    other = await client.get(f"/v1/runs/{run_id}/status", headers={"X-Tenant-Id": "other"})
    assert other.status_code == 404


async def test_cursor_pagination_walks_every_run_once_newest_first(
    client: httpx.AsyncClient, register
) -> None:
    await register()
    await register("name: other\ntasks: [{id: a, tool: noop}]\n")
    created = []
    for i in range(17):
        body = {"workflow": "greet" if i % 3 else "other"}
        created.append((await client.post("/v1/runs", json=body)).json()["id"])

    async def walk(**params: Any) -> tuple[list[str], int]:
        seen: list[str] = []
        pages = 0
        cursor = None
        while True:
            query = params | ({"cursor": cursor} if cursor else {})
            resp = await client.get("/v1/runs", params=query)
            assert resp.status_code == 200, resp.text
            page = resp.json()
            pages += 1
            seen.extend(r["id"] for r in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return seen, pages

    seen, pages = await walk(limit=5)
    assert pages == 4
    assert seen == list(reversed(created))  # newest first, nothing twice, nothing missed
    greet_only, _ = await walk(limit=4, workflow="greet")
    assert greet_only == [r for i, r in reversed(list(enumerate(created))) if i % 3]
    assert (await walk(status="running"))[0] == []
    assert len((await walk(status="pending", limit=100))[0]) == 17
    other_tenant = await client.get("/v1/runs", headers={"X-Tenant-Id": "acme"})
    assert other_tenant.json() == {"items": [], "next_cursor": None}


@unit_only
async def test_each_request_gets_a_server_span_that_its_events_continue(
    client: httpx.AsyncClient, resources: Resources, register, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.trace import SpanKind
    from support.tracing import capture_spans

    # A private SDK provider for the middleware only: no global tracing state changes.
    exporter = capture_spans(monkeypatch, "cadenza_gateway.middleware.tracer")
    try:
        await register()
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        resp = await client.post(
            "/v1/runs", json={"workflow": "greet"}, headers={"traceparent": parent}
        )
        run_id = resp.json()["id"]
        (span,) = [s for s in exporter.get_finished_spans() if s.name == "POST /v1/runs"]
        assert span.kind == SpanKind.SERVER
        assert format(span.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert span.parent is not None
        assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
        assert span.attributes["http.route"] == "/v1/runs"
        assert span.attributes["http.response.status_code"] == 201
        assert span.attributes["cadenza.run_id"] == run_id
        assert span.attributes["cadenza.tenant_id"] == "default"
        # The staged plan.requested event is a child of this request's span.
        (row, _accepted) = await outbox_rows(resources, key=run_id)
        headers = dict(row.kafka_headers())
        traceparent = headers["ce_traceparent"].decode()
        assert traceparent.split("-")[1:3] == [
            "4bf92f3577b34da6a3ce929d0e0e4736",
            format(span.context.span_id, "016x"),
        ]
    finally:
        exporter.shutdown()

"""POST /v1/runs/{id}/cancel (docs/execution.md): run + queued tasks cancelled in one
transaction with a run.cancelled event, then the Redis marker that stops workers."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from cadenza_events import RunEvent, Topic, decode
from cadenza_events.envelope import Message
from cadenza_runtime import Resources, keys
from cadenza_state import OutboxMessage, RunRecord, TaskRecord
from sqlalchemy import select, update

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)


async def add_tasks(resources: Resources, run_id: str) -> None:
    now = datetime.now(UTC)
    async with resources.sessions() as session, session.begin():
        for node, status in [
            ("a", "running"),
            ("b", "ready"),
            ("c", "pending"),
            ("d", "succeeded"),
        ]:
            session.add(
                TaskRecord(
                    id=f"{run_id}-{node}",
                    run_id=run_id,
                    node_id=node,
                    status=status,
                    attempt=1,
                    max_attempts=3,
                    ready_at=now,
                )
            )
        await session.execute(
            update(RunRecord).where(RunRecord.id == run_id).values(status="running")
        )


async def test_cancel_marks_run_and_queued_tasks_and_signals_workers(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]
    await add_tasks(resources, run_id)

    resp = await client.post(f"/v1/runs/{run_id}/cancel")
    assert resp.status_code == 202, resp.text
    view = resp.json()
    assert view["status"] == "cancelled"
    assert view["finished_at"] is not None
    by_node = {t["node_id"]: t["status"] for t in view["tasks"]}
    # Running tasks are stopped by their workers (they watch the marker), not here.
    assert by_node == {"a": "running", "b": "cancelled", "c": "cancelled", "d": "succeeded"}

    hot = resources.hot
    marker = hot.key(keys.run_cancelled(run_id))
    assert await hot.redis.get(marker) is not None
    assert 0 < await hot.redis.ttl(marker) <= 86_400
    status = (await client.get(f"/v1/runs/{run_id}/status")).json()
    assert (status["status"], status["terminal"]) == ("cancelled", True)

    async with resources.sessions() as session:
        rows = list(
            (
                await session.scalars(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.key == run_id,
                        OutboxMessage.topic == resources.registry.name(Topic.RUN_EVENTS),
                    )
                    .order_by(OutboxMessage.id)
                )
            ).all()
        )
    kinds = []
    for row in rows:
        env = decode(
            Message(
                row.topic,
                0,
                0,
                row.key.encode() if row.key else None,
                row.payload,
                tuple(row.kafka_headers()),
            )
        )
        assert isinstance(env.payload, RunEvent)
        kinds.append(env.payload.kind)
    assert kinds == ["run.accepted", "run.cancelled"]


async def test_cancelling_a_finished_run_is_a_409(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]
    async with resources.sessions() as session, session.begin():
        await session.execute(
            update(RunRecord).where(RunRecord.id == run_id).values(status="succeeded")
        )
    resp = await client.post(f"/v1/runs/{run_id}/cancel")
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["type"] == "urn:cadenza:problem:run-finished"
    assert problem["run_status"] == "succeeded"
    assert await resources.hot.redis.get(resources.hot.key(keys.run_cancelled(run_id))) is None
    view = (await client.get(f"/v1/runs/{run_id}")).json()
    assert view["status"] == "succeeded"


@unit_only
async def test_cancelling_twice_is_a_409_that_resends_the_stop_signal(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]
    assert (await client.post(f"/v1/runs/{run_id}/cancel")).status_code == 202
    marker = resources.hot.key(keys.run_cancelled(run_id))
    await resources.hot.redis.delete(marker)  # as if the first signal had been lost
    again = await client.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert again.json()["run_status"] == "cancelled"
    assert await resources.hot.redis.get(marker) is not None


@unit_only
async def test_cancel_still_succeeds_when_redis_fails(
    client: httpx.AsyncClient, resources: Resources, register, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register()
    run_id = (await client.post("/v1/runs", json={"workflow": "greet"})).json()["id"]

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(resources.hot.redis, "set", broken)
    resp = await client.post(f"/v1/runs/{run_id}/cancel")
    assert resp.status_code == 202
    assert resp.json()["status"] == "cancelled"

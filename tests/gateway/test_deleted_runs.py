"""A run deleted by run history retention answers 410 Gone on every route of a run (with
when it finished and was deleted), not 404; another tenant, and a run that never existed,
still get 404. Retention writing the tombstone: tests/orchestrator/test_retention.py."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from cadenza_runtime import Resources
from cadenza_state import DeletedRunRecord

RUN = "0b8c5a8e-5d0e-4a57-9d43-3f1f8c0f0a11"
FINISHED = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
DELETED = datetime(2026, 4, 6, 3, 0, tzinfo=UTC)

ROUTES = [
    ("GET", f"/v1/runs/{RUN}", None),
    ("GET", f"/v1/runs/{RUN}/status", None),
    ("GET", f"/v1/runs/{RUN}/timeline", None),
    ("GET", f"/v1/runs/{RUN}/calls", None),
    ("GET", f"/v1/runs/{RUN}/events", None),
    ("GET", f"/v1/runs/{RUN}/diff/other", None),
    ("POST", f"/v1/runs/{RUN}/cancel", {}),
    ("POST", f"/v1/runs/{RUN}/resume", {}),
    ("POST", f"/v1/runs/{RUN}/rerun", {}),
    ("POST", f"/v1/runs/{RUN}/fork", {}),
]


async def tombstone(resources: Resources, tenant: str = "default") -> None:
    async with resources.sessions() as session, session.begin():
        session.add(
            DeletedRunRecord(
                id=RUN,
                tenant_id=tenant,
                finished_at=FINISHED,
                deleted_at=DELETED,
                reason="retention",
            )
        )


async def test_every_route_of_a_deleted_run_answers_410(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    for method, path, body in ROUTES:
        resp = await client.request(method, path, json=body)
        assert resp.status_code == 404, (path, resp.text)
    await tombstone(resources)
    for method, path, body in ROUTES:
        resp = await client.request(method, path, json=body)
        assert resp.status_code == 410, (path, resp.text)
        problem = resp.json()
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert problem["type"] == "urn:cadenza:problem:run-deleted", path
        assert problem["run_id"] == RUN
        assert problem["reason"] == "retention"
        assert problem["finished_at"] == "2026-01-05T10:00:00Z"
        assert problem["deleted_at"] == "2026-04-06T03:00:00Z"
        assert "deleted by retention" in problem["detail"]


async def test_another_tenants_deleted_run_is_still_404(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    await tombstone(resources, tenant="acme")
    for method, path, body in ROUTES:
        resp = await client.request(method, path, json=body)
        assert resp.status_code == 404, (path, resp.text)
        assert resp.json()["type"] == "urn:cadenza:problem:run-not-found"

"""The gateway is killed with SIGKILL while clients submit runs and runs are in flight.

Clients send every run with an ``Idempotency-Key`` and retry until they get an answer, as a
production client does. Whatever the kill interrupted — a request before its commit, a
commit whose ``plan.requested`` was not yet published by the gateway's relay — every key
ends with exactly one run (the surviving processes' relays publish what the dead gateway
committed), every run finishes, and each side effect happens once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from support import assert_eventually
from support.drills import (
    assert_exactly_once,
    deployment,
    effect_chain,
    finished,
    task_facts,
)

pytestmark = pytest.mark.timeout(240)

RUNS = 30


async def submit_until_answered(api: httpx.AsyncClient, key: str, spec: dict[str, object]) -> str:
    """POST the run until the gateway answers 201 (created) or 200 (the key's earlier run),
    retrying through connection errors while the gateway is dead or restarting."""

    async def attempt() -> str | None:
        try:
            resp = await api.post(
                "/v1/runs", json={"spec": spec}, headers={"Idempotency-Key": key}, timeout=5
            )
        except httpx.HTTPError:
            return None  # the gateway is gone: try again
        if resp.status_code == 503:
            return None
        assert resp.status_code in (200, 201), f"{key}: {resp.status_code} {resp.text[:300]}"
        run_id: str = resp.json()["id"]
        return run_id

    result: str = await assert_eventually(
        attempt, timeout=120, interval=0.2, message=f"run {key} never accepted"
    )
    return result


async def test_kill_9_the_gateway_while_runs_are_submitted_and_in_flight(
    unique_id: str, tmp_path: Path, require_services: Callable[..., None]
) -> None:
    require_services("kafka", "postgres", "redis", "minio")
    async with deployment(unique_id, tmp_path, workers=2) as (cluster, api, db):
        accepted: list[str] = []

        async def client() -> None:
            for i in range(RUNS):
                spec = effect_chain(f"order{i}", 2, 0.2)
                accepted.append(await submit_until_answered(api, f"order-{i}", spec))

        submitting = asyncio.create_task(client())
        await assert_eventually(lambda: len(accepted) >= RUNS // 3, timeout=60, interval=0.02)
        gateway = next(p for p in cluster.processes if p.name == "gateway")
        gateway.kill()
        print(f"killed the gateway after {len(accepted)} accepted runs")
        await asyncio.sleep(0.5)  # clients keep retrying against a dead port
        cluster.start_gateway()  # same port; it answers the retries
        await asyncio.wait_for(submitting, timeout=150)

        assert len(set(accepted)) == RUNS, "a key answered with two different runs"
        async with db.connect() as conn:
            per_key = dict(
                (
                    await conn.execute(
                        text(
                            "SELECT idempotency_key, count(*) FROM runs "
                            "WHERE idempotency_key LIKE 'order-%' GROUP BY idempotency_key"
                        )
                    )
                ).all()
            )
        assert per_key == {f"order-{i}": 1 for i in range(RUNS)}
        for run_id in accepted:
            run = await finished(api, run_id, timeout=120)
            assert_exactly_once(run, await task_facts(db, run_id))

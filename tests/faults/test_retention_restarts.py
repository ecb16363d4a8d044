"""Run history retention through a PostgreSQL or MinIO restart mid-pass (`cadenza infra down
--only X`, then `up`), on a PRIVATE instance of the restarted store: the pass in flight
fails; later passes delete every run past the cutoff; no object under `runs/` is left, and
each run is named in exactly one audit entry and has one tombstone (its delete committed
once). And the trigger service's ledger retention loop through a PostgreSQL restart: its
passes fail while the database is down, and the loop goes on deleting once it is back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from cadenza_orchestrator import OrchestratorSettings
from cadenza_orchestrator.retention import Retention
from cadenza_runtime import Resources
from cadenza_state import (
    AuditLogEntry,
    DeletedRunRecord,
    RunRecord,
    S3ObjectStore,
    StateRuntime,
    StateSettings,
    TaskRecord,
    TriggeredEventRecord,
    open_state,
    utcnow,
)
from cadenza_trigger.ledger_retention import LedgerRetention
from cadenza_trigger.settings import TriggerSettings
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from support import assert_eventually
from support.cleanup import drop_bucket, drop_schema
from support.infra import PrivateService
from support.ledgers import add_ledger_rows

pytestmark = pytest.mark.timeout(240)

RUNS = 240
PAGE = 5  # 48 pages of ~0.2 s (SLOW_S): the restart lands mid-pass
SLOW_S = 0.2
LATER = timedelta(days=100)


async def _seed(state: StateRuntime) -> list[str]:
    run_ids = [f"ret-{i:04d}" for i in range(RUNS)]
    async with state.sessions() as session, session.begin():
        now = utcnow()
        for i, run_id in enumerate(run_ids):
            session.add(
                RunRecord(
                    id=run_id,
                    tenant_id="acme",
                    workflow_name="w",
                    spec={},
                    inputs={},
                    status="succeeded",
                    finished_at=now - timedelta(seconds=RUNS - i),
                )
            )
        await session.flush()
        session.add_all(
            TaskRecord(
                id=f"{r}.a", run_id=r, node_id="a", status="succeeded", attempt=1, max_attempts=1
            )
            for r in run_ids
        )
    limit = asyncio.Semaphore(16)

    async def put(key: str) -> None:
        async with limit:
            await state.objects.put(key, b"{}")

    await asyncio.gather(*(put(f"runs/{r}/tasks/{r}.a/1/output.json") for r in run_ids))
    return run_ids


async def _left(state: StateRuntime) -> int:
    async with state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(RunRecord)) or 0)


@pytest.mark.parametrize("store", ["postgres", "minio"])
async def test_retention_through_a_store_restart_mid_pass(
    store: str,
    request: pytest.FixtureRequest,
    unique_id: str,
    tmp_path: Path,
    require_services: Callable[..., None],
) -> None:
    require_services("postgres", "minio")
    private: PrivateService = request.getfixturevalue(f"private_{store}")
    overrides = {
        "database_url": private.overrides()["CADENZA_DATABASE_URL"]
        if store == "postgres"
        else StateSettings().database_url,
        "s3_endpoint": private.overrides()["CADENZA_S3_ENDPOINT"]
        if store == "minio"
        else StateSettings().s3_endpoint,
    }
    settings = StateSettings(
        database_schema=unique_id,
        s3_bucket=unique_id.replace("_", "-"),
        redis_backend="memory",
        **overrides,
    )
    state = await open_state(settings)
    try:
        run_ids = await _seed(state)
        real = state.objects.delete_prefix

        async def slow(prefix: str) -> int:  # a pass long enough to stop a store under it
            await asyncio.sleep(SLOW_S)
            return await real(prefix)

        state.objects.delete_prefix = slow  # type: ignore[method-assign]
        retention = Retention(
            state, OrchestratorSettings(retention_days=30, retention_batch_size=PAGE)
        )
        passing = asyncio.create_task(retention.prune_once(utcnow() + LATER))
        await assert_eventually(lambda: _left_below(state, RUNS), timeout=60, interval=0.01)
        down = private.prepare_down()
        try:
            await asyncio.to_thread(down.run)
        finally:
            down.cancel()
        try:
            await asyncio.wait_for(passing, 120)
        except Exception as exc:  # whichever error the store gave
            print(f"the pass in flight failed: {type(exc).__name__}: {exc}"[:300])
        else:
            pytest.fail("the pass in flight finished although its store went down")
        await asyncio.to_thread(private.up)

        async def pass_succeeds() -> bool:
            try:
                await retention.prune_once(utcnow() + LATER)
            except Exception:
                return False
            return await _left(state) == 0

        await assert_eventually(pass_succeeds, timeout=120, interval=1.0)
        # Recursive: objects only. A MinIO stopped in the middle of a delete can leave the
        # object's empty folder behind, which a non-recursive listing shows as a prefix.
        names = await asyncio.to_thread(
            lambda: list(
                state.objects.client.list_objects(  # type: ignore[attr-defined]
                    state.objects.bucket, "runs/", recursive=True
                )
            )
        )
        assert names == [], names[:5]
        async with state.sessions() as session:
            audit = (
                await session.scalars(
                    select(AuditLogEntry).where(AuditLogEntry.action == "runs.deleted")
                )
            ).all()
            tombstones = list(await session.scalars(select(DeletedRunRecord.id)))
        named = [r for entry in audit for r in entry.data["run_ids"]]
        assert sorted(named) == run_ids  # each run's delete committed once
        assert sorted(tombstones) == run_ids
    finally:
        await state.aclose()
        await drop_schema(settings)
        store_ = S3ObjectStore.from_settings(settings)
        await asyncio.to_thread(drop_bucket, store_)


async def _left_below(state: StateRuntime, n: int) -> bool:
    """Some pages are deleted (so the pass is under way)."""
    return await _left(state) < n


def _ledger_passes(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "cadenza_trigger_ledger_retention_passes_total", {"outcome": outcome}
    )
    return value or 0.0


async def _add_old_events(state: StateRuntime, first: int, count: int) -> None:
    await add_ledger_rows(state.sessions, [timedelta(days=40)] * count, utcnow(), first=first)


async def _no_events_left(state: StateRuntime) -> bool:
    async with state.sessions() as session:
        stmt = select(func.count()).select_from(TriggeredEventRecord)
        return int(await session.scalar(stmt) or 0) == 0


async def test_ledger_retention_loop_through_a_postgres_restart(
    private_postgres: PrivateService, unique_id: str, require_services: Callable[..., None]
) -> None:
    require_services("postgres")
    settings = StateSettings(
        database_url=private_postgres.overrides()["CADENZA_DATABASE_URL"],
        database_schema=unique_id,
        redis_backend="memory",
        object_store="local",
    )
    state = await open_state(settings)
    resources = cast(Resources, SimpleNamespace(sessions=state.sessions))
    retention = LedgerRetention(
        resources,
        TriggerSettings(
            ledger_retention_days=30,
            ledger_retention_interval_s=0.2,
            ledger_retention_batch_size=50,
        ),
    )
    try:
        await _add_old_events(state, 0, 500)
        await retention.start()
        await assert_eventually(lambda: _no_events_left(state), timeout=30)

        errors = _ledger_passes("error")
        await asyncio.to_thread(private_postgres.down)
        await assert_eventually(lambda: _ledger_passes("error") > errors, timeout=60)
        await asyncio.to_thread(private_postgres.up)

        # Back: rows recorded now are deleted by the same loop, each once.
        oks = _ledger_passes("ok")
        await assert_eventually(lambda: _ledger_passes("ok") > oks, timeout=60, interval=0.2)
        await _add_old_events(state, 500, 500)
        await assert_eventually(lambda: _no_events_left(state), timeout=30)
        assert retention.running
    finally:
        await retention.stop()
        await state.aclose()
        await drop_schema(settings)

"""`cadenza retention preview | run` and `cadenza retention ledgers preview | run` as an
operator types them, on a dev database and object folder: what a pass would delete (per
tenant); a pass now; bad options named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cadenza_state import (
    DeadLetterRecord,
    RunRecord,
    ScheduleFireRecord,
    StateRuntime,
    StateSettings,
    TaskRecord,
    TriggeredEventRecord,
    open_state,
    utcnow,
)
from sqlalchemy import func, select
from support.cli import run_cli
from support.ledgers import add_ledger_rows

pytestmark = pytest.mark.unit


async def cadenza(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    return await run_cli(*args, env=env, inherit_cadenza=False)


def settings_env(tmp_path: Path) -> dict[str, str]:
    return {
        "CADENZA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cadenza.db'}",
        "CADENZA_OBJECT_STORE": "local",
        "CADENZA_OBJECT_STORE_DIR": str(tmp_path / "objects"),
        "CADENZA_REDIS_BACKEND": "memory",
    }


async def seed(tmp_path: Path) -> dict[str, str]:
    """Two finished runs (two tenants, one with a task and an object) and a running one; a
    discarded dead letter and a pending one."""
    state = await open_state(
        StateSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'cadenza.db'}",
            object_store="local",
            object_store_dir=tmp_path / "objects",
            redis_backend="memory",
        )
    )
    now = utcnow()
    runs: dict[str, tuple[str, str, datetime | None]] = {
        "done": ("acme", "succeeded", now),
        "other": ("globex", "failed", now),
        "live": ("acme", "running", None),
    }
    try:
        async with state.sessions() as session, session.begin():
            for run_id, (tenant, status, finished) in runs.items():
                session.add(
                    RunRecord(
                        id=run_id,
                        tenant_id=tenant,
                        workflow_name="w",
                        spec={},
                        inputs={},
                        status=status,
                        finished_at=finished,
                    )
                )
            await session.flush()
            session.add(
                TaskRecord(
                    id="done.a", run_id="done", node_id="a", status="succeeded", max_attempts=1
                )
            )
            for offset, (status, resolved) in enumerate([("discarded", now), ("pending", None)]):
                session.add(
                    DeadLetterRecord(
                        tenant_id="acme",
                        original_topic="cadenza.task.result",
                        partition=0,
                        offset=offset,
                        consumer_group="g",
                        value=b"{}",
                        reason="poison",
                        error_code="decode",
                        attempts=1,
                        failed_at=now,
                        status=status,
                        resolved_at=resolved,
                    )
                )
        await state.objects.put("runs/done/tasks/done.a/params.json", b"{}")
    finally:
        await state.aclose()
    return {run_id: tenant for run_id, (tenant, _, _) in runs.items()}


@asynccontextmanager
async def dev_database(tmp_path: Path, *, migrate: bool = False) -> AsyncIterator[StateRuntime]:
    """The dev database the commands ran on, to look at what they left."""
    state = await open_state(
        StateSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'cadenza.db'}", redis_backend="memory"
        ),
        run_migrations=migrate,
    )
    try:
        yield state
    finally:
        await state.aclose()


async def runs_left(tmp_path: Path) -> set[str]:
    async with dev_database(tmp_path) as state, state.sessions() as session:
        return set(await session.scalars(select(RunRecord.id)))


@pytest.mark.timeout(240)
async def test_preview_then_run_deletes_what_the_preview_named(tmp_path: Path) -> None:
    await seed(tmp_path)
    env = settings_env(tmp_path)
    later = (utcnow() + timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%S")

    code, out, err = await cadenza("retention", "preview", "--days", "30", env=env)
    assert code == 0, err
    assert "0 run(s) finished before" in out  # today: nothing is old enough

    code, out, err = await cadenza(
        "retention", "preview", "--days", "30", "--as-of", later, env=env
    )
    assert code == 0, err
    assert "keeping 30 day(s): 2 run(s) finished before" in out
    assert "  acme: 1 run(s)" in out
    assert "  globex: 1 run(s)" in out
    assert "and 1 replayed or discarded dead letter(s)" in out  # the pending one stays
    assert await runs_left(tmp_path) == {"done", "other", "live"}  # a preview deletes nothing

    env["CADENZA_ORCHESTRATOR_RETENTION_DAYS"] = "30"  # the orchestrator's own setting
    code, out, err = await cadenza("retention", "run", "--as-of", later, env=env)
    assert code == 0, err
    assert out.strip() == (
        "deleted 2 run(s), 1 object(s), 0 checkpoint row(s), 1 resolved dead letter(s) "
        "(keeping 30 day(s))"
    )
    assert await runs_left(tmp_path) == {"live"}
    assert not (tmp_path / "objects" / "runs" / "done").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "-1"], "--days"),
        ([], "retention is off"),  # no --days and the orchestrator's setting is 0
        (["--days", "30", "--as-of", "soon"], "--as-of"),
    ],
)
async def test_bad_options_are_refused_by_name(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, err = await cadenza("retention", "preview", *args, env=settings_env(tmp_path))
    assert code == 2
    assert message in err


async def ledger_rows_left(tmp_path: Path) -> tuple[list[str], int]:
    """The dedupe keys of ``triggered_events`` left, and how many ``schedule_fires``."""
    async with dev_database(tmp_path) as state, state.sessions() as session:
        keys = await session.scalars(
            select(TriggeredEventRecord.dedupe_key).order_by(TriggeredEventRecord.id)
        )
        fires = await session.scalar(select(func.count()).select_from(ScheduleFireRecord))
        return list(keys), int(fires or 0)


@pytest.mark.timeout(240)
async def test_ledgers_preview_then_run(tmp_path: Path) -> None:
    async with dev_database(tmp_path, migrate=True) as state:
        # three rows of each ledger 40 days old, one 2 days old
        ages = [timedelta(days=40)] * 3 + [timedelta(days=2)]
        await add_ledger_rows(state.sessions, ages, utcnow())
    env = settings_env(tmp_path)

    code, out, err = await cadenza("retention", "ledgers", "preview", "--days", "30", env=env)
    assert code == 0, err
    assert "keeping 30 day(s): 3 triggered event(s) and 3 schedule fire(s) from before" in out
    later = (utcnow() + timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%S")
    code, out, err = await cadenza(
        "retention", "ledgers", "preview", "--days", "30", "--as-of", later, env=env
    )
    assert code == 0, err
    assert ": 4 triggered event(s) and 4 schedule fire(s)" in out
    assert await ledger_rows_left(tmp_path) == (["k0", "k1", "k2", "k3"], 4)  # none deleted

    env["CADENZA_TRIGGER_LEDGER_RETENTION_DAYS"] = "30"  # the trigger service's own setting
    code, out, err = await cadenza("retention", "ledgers", "run", env=env)
    assert code == 0, err
    assert out.startswith("deleted 3 triggered event(s) and 3 schedule fire(s) from before")
    assert out.rstrip().endswith("(keeping 30 day(s))")
    assert await ledger_rows_left(tmp_path) == (["k3"], 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "-1"], "--days"),
        ([], "ledger retention is off"),  # no --days and the trigger service's setting is 0
        (["--days", "30", "--as-of", "soon"], "--as-of"),
    ],
)
async def test_bad_ledger_options_are_refused_by_name(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, err = await cadenza("retention", "ledgers", "run", *args, env=settings_env(tmp_path))
    assert code == 2
    assert message in err

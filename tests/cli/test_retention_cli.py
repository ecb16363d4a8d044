"""`cadenza retention preview | run` as an operator types them, on a dev database and
object folder: what a pass would delete, per tenant; a pass now; bad options named."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cadenza_state import (
    DeadLetterRecord,
    RunRecord,
    StateSettings,
    TaskRecord,
    open_state,
    utcnow,
)
from sqlalchemy import select
from support.cli import run_cli

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


async def runs_left(tmp_path: Path) -> set[str]:
    state = await open_state(
        StateSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'cadenza.db'}", redis_backend="memory"
        ),
        run_migrations=False,
    )
    try:
        async with state.sessions() as session:
            return set(await session.scalars(select(RunRecord.id)))
    finally:
        await state.aclose()


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

"""The orchestrator's own cost per event, in this process, without Kafka or the workers:
what a change to the hot path does to it, with far less noise than bench/dispatch.py.

    uv run cadenza infra up
    uv run python bench/orchestrator_step.py        # about 20 s

The orchestrator's consumer entry point (``handle_batch``) runs here on the real PostgreSQL
(a fresh schema, dropped after) and Redis, with the in-memory bus in place of Kafka (its
publish is a list append, so the Kafka client's cost is left out). Rows:
- chain: a chain of ``--chain`` no-op tasks is planned, then each task's result is handed
  over alone, as a chain's step arrives: ``chain_step_cpu_ms`` (this process) and
  ``chain_step_wall_ms`` (with the statement's round trip), medians over the steps after
  ``--warmup``. Each step applies the result, writes the batch's one statement and
  publishes the next task.ready: the orchestrator's part of a chain step.
- fan-out: a fan-out of ``--fanout`` is planned, then its results are handed over
  ``--batch`` at a time: ``fanout_result_cpu_us`` per result.
- baseline: one statement on the same database through raw asyncpg (``raw_statement_*``),
  and the same as the hot path sends it, in a SQLAlchemy session (``direct.execute`` on
  its own, then ``commit``: ``session_statement_*``), medians. The ratios say how many
  such round trips a step costs (``ratio_chain_step_vs_raw_statement``), and what the
  session and the pool's checkout add to each batch (``session_overhead_cpu_us``).
The LAST line printed is the JSON result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import uvloop
from cadenza_events import BusSettings, Envelope, RunEvent, TaskResult
from cadenza_state import StateSettings, direct, utcnow
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dispatch import chain_spec, drop_schema, engine_plan, fanout_spec
from step_support import task_envelope, timed


def result(run_id: str, task_id: str, node_id: str) -> Envelope[TaskResult]:
    """A no-op task's result as a worker sends it: its two run events ride along."""
    now = utcnow()
    common = {"attempt": 1, "worker_id": "bench-worker"}
    events = [
        RunEvent(
            run_id=run_id,
            kind="task.started",
            task_id=task_id,
            node_id=node_id,
            status="running",
            data={**common, "resumed": False},
            at=now,
        ),
        RunEvent(
            run_id=run_id,
            kind="task.finished",
            task_id=task_id,
            node_id=node_id,
            status="succeeded",
            data={**common, "tries": 1, "duration_s": 0.0001, "error": None, "output_ref": None},
            at=now,
        ),
    ]
    payload = TaskResult(
        run_id=run_id,
        task_id=task_id,
        attempt=1,
        status="succeeded",
        output={},
        worker_id="bench-worker",
        started_at=now,
        events=events,
    )
    return task_envelope(payload, "/bench/worker", run_id, task_id)


async def chain_row(resources: Any, handlers: Any, length: int, warmup: int) -> dict[str, float]:
    run_id, _ = await engine_plan(resources, chain_spec(length))
    walls, cpus = [], []
    for i in range(length - 1):  # the last result would finish the run: not a step
        env = result(run_id, f"{run_id}.t{i}", f"t{i}")
        wall, cpu = await timed(lambda env=env: handlers.handle_batch([env]))
        if i >= warmup:
            walls.append(wall)
            cpus.append(cpu)
    async with resources.sessions() as session:
        dispatched = (
            await session.execute(
                text("SELECT status FROM tasks WHERE id = :id"), {"id": f"{run_id}.t{length - 1}"}
            )
        ).scalar_one()
    if dispatched != "ready":  # every step must have dispatched the next task
        raise SystemExit(f"the chain's last task is {dispatched!r}, not ready")
    return {
        "chain_steps": len(cpus),
        "chain_step_cpu_ms": round(statistics.median(cpus) * 1e3, 3),
        "chain_step_wall_ms": round(statistics.median(walls) * 1e3, 3),
    }


async def fanout_row(resources: Any, handlers: Any, width: int, batch: int) -> dict[str, float]:
    run_id, _ = await engine_plan(resources, fanout_spec(width))
    async with resources.sessions() as session:
        rows = (
            await session.execute(
                text("SELECT id, node_id FROM tasks WHERE run_id = :id AND status = 'ready'"),
                {"id": run_id},
            )
        ).all()
    if len(rows) != width:
        raise SystemExit(f"{len(rows)} of the fan-out's {width} tasks are ready")
    envs = [result(run_id, task_id, node_id) for task_id, node_id in rows]
    cpu = 0.0
    for start in range(0, len(envs), batch):
        chunk = envs[start : start + batch]
        cpu += (await timed(lambda chunk=chunk: handlers.handle_batch(chunk)))[1]
    async with resources.sessions() as session:
        status = (
            await session.execute(text("SELECT status FROM runs WHERE id = :id"), {"id": run_id})
        ).scalar_one()
    if status != "succeeded":
        raise SystemExit(f"the fan-out's run is {status!r} after all its results")
    return {"fanout_result_cpu_us": round(cpu / width * 1e6, 1)}


async def statement_rows(resources: Any, repeat: int) -> dict[str, float]:
    """One statement's round trip: on the raw driver, and through a session as the hot
    path sends it."""

    async def through_session() -> None:
        async with resources.sessions() as session:
            await direct.execute(session, "SELECT 1", alone=True)
            await session.commit()

    out: dict[str, float] = {}
    async with resources.state.engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection

        async def on_raw() -> None:
            await raw.execute("SELECT 1")

        for name, call in (("raw_statement", on_raw), ("session_statement", through_session)):
            samples = [await timed(call) for _ in range(repeat)][repeat // 10 :]  # warm first
            out[f"{name}_wall_us"] = round(statistics.median(s[0] for s in samples) * 1e6, 1)
            out[f"{name}_cpu_us"] = round(statistics.median(s[1] for s in samples) * 1e6, 1)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from cadenza_orchestrator import Orchestrator, OrchestratorSettings
    from cadenza_runtime import open_resources, tune_gc

    schema = "benchstep" + uuid.uuid4().hex[:8]
    state = StateSettings(
        database_schema=schema,
        object_store="local",
        object_store_dir=Path(tempfile.mkdtemp(prefix="cadenza-bench-step-")),
    )
    bus = BusSettings(backend="memory", topic_prefix=f"{schema}.")
    resources = await open_resources(bus, state)  # the relay runs: deletes come in passes
    out: dict[str, Any] = {}
    try:
        handlers = Orchestrator(resources, OrchestratorSettings()).handlers
        tune_gc()  # as every service does once started
        out.update(await statement_rows(resources, args.repeat))
        out.update(await chain_row(resources, handlers, args.chain, args.warmup))
        out.update(await fanout_row(resources, handlers, args.fanout, args.batch))
    finally:
        await resources.close()
        await drop_schema(StateSettings(database_schema=schema))
    out["ratio_chain_step_vs_raw_statement"] = round(
        out["chain_step_cpu_ms"] * 1e3 / out["raw_statement_cpu_us"], 1
    )
    out["session_overhead_cpu_us"] = round(
        out["session_statement_cpu_us"] - out["raw_statement_cpu_us"], 1
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chain", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=100, help="chain steps not counted")
    parser.add_argument("--fanout", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=200, help="fan-out results per batch")
    parser.add_argument("--repeat", type=int, default=2000, help="statements per baseline")
    args = parser.parse_args()
    if args.chain <= args.warmup + 1:
        parser.error("--chain must be longer than --warmup + 1")
    print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()

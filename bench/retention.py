"""How fast run history retention deletes, on the real PostgreSQL and MinIO.

    uv run python bench/retention.py                      # 5,000 runs of 10 tasks, ~1 min
    uv run python bench/retention.py --runs 20000 --with-objects 0.5

A fresh schema and bucket are seeded with ``--runs`` finished runs of ``--tasks`` tasks
each (every task with one recorded attempt); ``--with-objects`` of them have
``--objects`` objects under ``runs/{id}/`` (claim-checked params and outputs, an agent's
LLM call records), and one agent checkpoint each. Two rows, on the same seed, in the same
run:

- `retention`: ``Retention.prune_once`` as the orchestrator runs it (objects, then
  checkpoints, then the rows by cascade, one transaction per page, with the audit entry).
- `rows_only` (the baseline): the database's share alone — the same pages of run rows
  deleted by cascade, nothing else — the floor of what deleting a run costs.

A run deleted must keep pace with runs finishing: at 2,000 no-op tasks/s in runs of 10,
200 runs finish a second. The LAST line printed is the JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cadenza_events import BusSettings  # noqa: E402
from cadenza_orchestrator import OrchestratorSettings  # noqa: E402
from cadenza_orchestrator.retention import Retention  # noqa: E402
from cadenza_runtime import Resources, open_resources  # noqa: E402
from cadenza_state import S3ObjectStore, StateSettings, utcnow  # noqa: E402
from cadenza_state.checkpoints import thread_id  # noqa: E402
from sqlalchemy import text  # noqa: E402
from support.cleanup import drop_bucket, drop_schema  # noqa: E402

# Runs, tasks and attempts made by the database itself: seeding 50,000 rows from Python
# would take longer than deleting them.
SEED = """
INSERT INTO runs (id, tenant_id, workflow_name, spec, inputs, status, created_at,
                  updated_at, finished_at, version)
SELECT :prefix || g, 'acme', 'bench', '{}'::jsonb, '{}'::jsonb, 'succeeded',
       now() - interval '1 hour', now(), now() - (g || ' milliseconds')::interval, 1
FROM generate_series(1, :runs) AS g;
INSERT INTO tasks (id, run_id, node_id, status, attempt, max_attempts, updated_at)
SELECT :prefix || g || '.t' || t, :prefix || g, 't' || t, 'succeeded', 1, 3, now()
FROM generate_series(1, :runs) AS g, generate_series(1, :tasks) AS t;
INSERT INTO task_attempts (task_id, attempt, worker_id, status)
SELECT id, 1, 'bench', 'succeeded' FROM tasks WHERE run_id LIKE :prefix || '%';
"""
CHECKPOINTS = """
CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL, parent_checkpoint_id TEXT, type TEXT,
    checkpoint JSONB NOT NULL, metadata JSONB NOT NULL DEFAULT '{}',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id))
"""


async def seed(
    resources: Resources, prefix: str, runs: int, tasks: int, with_objects: float, objects: int
) -> list[str]:
    """Seed the runs; returns the ids of those given objects and a checkpoint."""
    async with resources.state.engine.begin() as conn:
        for statement in SEED.strip().split(";\n"):
            await conn.execute(text(statement), {"prefix": prefix, "runs": runs, "tasks": tasks})
        # The PostgreSQL checkpointer's main table, as LangGraph creates it (a worker would).
        await conn.execute(text(CHECKPOINTS))
    stride = max(1, round(1 / with_objects)) if with_objects else 0
    heavy = [f"{prefix}{g}" for g in range(1, runs + 1, stride)] if stride else []
    store = resources.objects
    limit = asyncio.Semaphore(16)

    async def put(key: str) -> None:
        async with limit:
            await store.put(key, b'{"bench": true}')

    keys = [f"runs/{r}/tasks/{r}.t1/1/calls/{n}.json" for r in heavy for n in range(objects)]
    await asyncio.gather(*(put(k) for k in keys))
    async with resources.state.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO checkpoints (thread_id, checkpoint_id, checkpoint) "
                "SELECT unnest(CAST(:threads AS text[])), '1', '{}'::jsonb"
            ),
            {"threads": [thread_id(f"{r}.t1", 1) for r in heavy]},
        )
    return heavy


async def rows_only(resources: Resources, batch: int) -> int:
    """The baseline: pages of run rows deleted by cascade, oldest finished first."""
    deleted = 0
    while True:
        async with resources.state.engine.begin() as conn:
            ids = (
                (
                    await conn.execute(
                        text(
                            "SELECT id FROM runs WHERE finished_at IS NOT NULL "
                            "ORDER BY finished_at, id LIMIT :n"
                        ),
                        {"n": batch},
                    )
                )
                .scalars()
                .all()
            )
            if not ids:
                return deleted
            await conn.execute(text("DELETE FROM runs WHERE id = ANY(:ids)"), {"ids": list(ids)})
            deleted += len(ids)


async def one_row(args: argparse.Namespace, name: str) -> dict[str, Any]:
    unique = f"bret{uuid.uuid4().hex[:10]}"
    state = StateSettings(database_schema=unique, s3_bucket=unique)
    resources = await open_resources(BusSettings(backend="memory"), state, start_relay=False)
    try:
        await resources.objects.ensure_bucket()
        started = time.perf_counter()
        heavy = await seed(
            resources, f"{unique}-", args.runs, args.tasks, args.with_objects, args.objects
        )
        seeded_s = time.perf_counter() - started
        settings = OrchestratorSettings(retention_days=30, retention_batch_size=args.batch)
        cpu = time.process_time()
        started = time.perf_counter()
        if name == "retention":
            pruned = await Retention(resources.state, settings).prune_once(
                utcnow() + timedelta(days=100)
            )
            runs, objects = pruned.runs, pruned.objects
        else:
            runs, objects = await rows_only(resources, args.batch), 0
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        assert runs == args.runs, (name, runs)
        async with resources.state.engine.connect() as conn:
            left = await conn.scalar(text("SELECT count(*) FROM tasks"))
        assert left == 0, left
        return {
            f"{name}_runs_per_s": round(runs / wall, 1),
            f"{name}_s": round(wall, 2),
            f"{name}_objects": objects,
            f"{name}_bench_cpu_ms_per_run": round(cpu * 1000 / runs, 3),
            f"{name}_seed_s": round(seeded_s, 1),
            f"{name}_runs_with_objects": len(heavy),
        }
    finally:
        await resources.close()
        await drop_schema(state)
        store = resources.objects
        if isinstance(store, S3ObjectStore):
            await asyncio.to_thread(drop_bucket, store)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--tasks", type=int, default=10, help="tasks per run")
    parser.add_argument(
        "--with-objects", type=float, default=0.2, help="share of the runs with objects"
    )
    parser.add_argument("--objects", type=int, default=3, help="objects of such a run")
    parser.add_argument("--batch", type=int, default=500, help="retention_batch_size")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "runs": args.runs,
        "tasks_per_run": args.tasks,
        "with_objects": args.with_objects,
        "objects_per_run": args.objects,
    }
    for name in ("rows_only", "retention"):
        row = await one_row(args, name)
        print(json.dumps(row), flush=True)
        result |= row
    result["ratio_retention_vs_rows_only"] = round(
        result["retention_runs_per_s"] / result["rows_only_runs_per_s"], 3
    )
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())

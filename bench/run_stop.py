"""How long a running task goes on after its run is cancelled, on the real services.

    uv run python bench/run_stop.py              # 15 cancels per row, ~1.5 min
    uv run python bench/run_stop.py --runs 40

A gateway, an orchestrator and one worker run as processes (`tests/support/cluster.py`) on
the project's Kafka, PostgreSQL and Redis (`cadenza infra up`). Each run is one `sleep`
task of 60 s; once a worker holds its lease, `POST /v1/runs/{id}/cancel` is sent, and the
stop is the time from that request to the worker's `cancelled` result (its `finished_at`,
the moment the tool was stopped). Two rows, in the same run:

- `broadcast`: the worker as deployed; the orchestrator's `run.stopped` on `run.control`
  reaches it at once (docs/execution.md, Cancel).
- `heartbeat` (the baseline): the same worker with `CADENZA_WORKER_STOP_BROADCAST=false`,
  which learns of the stop only from the Redis marker its heartbeat reads every
  `lease_ttl/3` (2 s by default) — how every stop reached workers before `run.control`.

The LAST line printed is the JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from cadenza_runtime import keys  # noqa: E402
from cadenza_state import HotState, StateSettings, create_engine  # noqa: E402
from dispatch import delete_hot_keys, delete_topics, progress  # noqa: E402
from support.cleanup import drop_schema  # noqa: E402
from support.cluster import Cluster, ServiceProcess  # noqa: E402

SLEEP = {"name": "stop-me", "tasks": [{"id": "nap", "tool": "sleep", "with": {"seconds": 60}}]}


async def running_task(api: httpx.AsyncClient, hot: HotState, run_id: str) -> str:
    """The run's task id, once a worker holds its lease (workers write no task rows)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = (await api.get(f"/v1/runs/{run_id}")).json()
        tasks = run.get("tasks") or []
        if tasks and await hot.lease_owner(keys.task_lease(tasks[0]["id"])) is not None:
            return str(tasks[0]["id"])
        await asyncio.sleep(0.02)
    raise TimeoutError(f"run {run_id}: no worker took its task")


async def stopped_at(db: AsyncEngine, task_id: str) -> float:
    """When the worker stopped the task (its cancelled result's ``finished_at``)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        async with db.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT status, finished_at FROM task_attempts "
                        "WHERE task_id = :id AND finished_at IS NOT NULL"
                    ),
                    {"id": task_id},
                )
            ).first()
        if row is not None:
            status, finished = row
            if status != "cancelled":
                raise RuntimeError(f"task {task_id} ended {status}, not cancelled")
            return float(finished.timestamp())
        await asyncio.sleep(0.05)
    raise TimeoutError(f"task {task_id}: the worker never reported it stopped")


async def row(
    api: httpx.AsyncClient, hot: HotState, db: AsyncEngine, runs: int, label: str
) -> list[float]:
    """Seconds from each cancel request to the task's stop, for ``runs`` runs."""
    stops = []
    pace = random.Random(runs)  # the same moments in both rows
    for i in range(runs):
        resp = await api.post("/v1/runs", json={"spec": SLEEP, "inputs": {}})
        resp.raise_for_status()
        run_id = resp.json()["id"]
        task_id = await running_task(api, hot, run_id)
        # A cancel comes at any moment of the heartbeat's 2 s cycle, not just after a beat
        # (back to back, the runs would fall into step with it).
        await asyncio.sleep(pace.uniform(0, 2))
        asked = time.time()
        (await api.post(f"/v1/runs/{run_id}/cancel")).raise_for_status()
        stops.append(await stopped_at(db, task_id) - asked)
        progress(f"{label} {i + 1}/{runs}: stopped {stops[-1] * 1000:.0f} ms after the cancel")
    return stops


def figures(stops: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(stops, n=10, method="inclusive")
    return {
        "p50_ms": round(statistics.median(stops) * 1000, 1),
        "p90_ms": round(qs[8] * 1000, 1),
        "max_ms": round(max(stops) * 1000, 1),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    namespace = "benchstop" + uuid.uuid4().hex[:8]
    cluster = Cluster(
        namespace=namespace,
        log_dir=Path(tempfile.mkdtemp(prefix="cadenza-bench-stop-")),
        # The deployed defaults (the test clusters beat and sweep faster): a heartbeat every
        # 2 s, a sweep every second.
        env_overrides={
            "CADENZA_WORKER_LEASE_TTL_S": "6",
            "CADENZA_ORCHESTRATOR_SWEEP_INTERVAL_S": "1",
        },
    )
    state = StateSettings(database_schema=namespace, redis_key_prefix=f"{namespace}:")
    db = create_engine(state)
    hot = HotState.from_settings(state)
    out: dict[str, Any] = {"runs_per_row": args.runs}
    try:
        progress(f"starting the services ({namespace})")
        cluster.start_gateway()
        cluster.start_orchestrator()
        async with httpx.AsyncClient(base_url=cluster.url, timeout=60) as api:
            for label, broadcast in (("broadcast", "true"), ("heartbeat", "false")):
                worker: ServiceProcess = cluster.start_worker(
                    {"CADENZA_WORKER_STOP_BROADCAST": broadcast}
                )
                try:
                    await row(api, hot, db, 1, f"{label} warm-up")
                    for key, value in figures(await row(api, hot, db, args.runs, label)).items():
                        out[f"{label}_stop_{key}"] = value
                finally:
                    await asyncio.to_thread(worker.stop)
        out["heartbeat_over_broadcast_p50"] = round(
            out["heartbeat_stop_p50_ms"] / max(out["broadcast_stop_p50_ms"], 0.1), 1
        )
    except Exception:
        print(cluster.logs(), file=sys.stderr)
        raise
    finally:
        cluster.stop()
        await hot.redis.aclose()
        await db.dispose()
        await drop_schema(StateSettings(database_schema=namespace))
        await delete_topics(f"{namespace}.")
        await delete_hot_keys(f"{namespace}:")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="cancels per row")
    args = parser.parse_args()
    started = time.monotonic()
    out = asyncio.run(bench(args))
    out["bench_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Dispatch benchmark: no-op tool tasks through real Kafka, PostgreSQL and Redis with the
gateway, orchestrator and workers as separate processes.

    uv run python bench/dispatch.py [--chain 200] [--fanout 1000] [--workers 2] [--rate 500]

Phase 1 (throughput): a long chain and a wide fan-out submitted together; tasks/s is the
number of tasks over the span from the first `ready` to the last `finished`.
Phase 2 (latency): an offered load of `--rate` tasks/s (runs of `--batch` parallel tasks)
for `--duration` seconds; dispatch = ready in the orchestrator → started in a worker.
Baseline: phase 1 again on the in-process stack (`cadenza dev`: memory bus, SQLite) in this
process, so the JSON line carries the ratio. The LAST line printed is the JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from cadenza_state import StateSettings, create_engine  # noqa: E402
from support.cleanup import drop_schema  # noqa: E402
from support.cluster import Cluster  # noqa: E402

TERMINAL = {"succeeded", "failed", "cancelled"}


def chain_spec(length: int) -> dict[str, Any]:
    tasks = [{"id": "t0", "kind": "tool", "tool": "noop"}]
    tasks += [
        {"id": f"t{i}", "kind": "tool", "tool": "noop", "needs": [f"t{i - 1}"]}
        for i in range(1, length)
    ]
    return {"name": "bench-chain", "tasks": tasks}


def fanout_spec(width: int) -> dict[str, Any]:
    return {
        "name": f"bench-fanout-{width}",
        "tasks": [
            {"id": "each", "kind": "tool", "tool": "noop", "for_each": f"list(range({width}))"}
        ],
    }


async def submit(api: httpx.AsyncClient, spec: dict[str, Any]) -> str:
    resp = await api.post("/v1/runs", json={"spec": spec, "inputs": {}})
    resp.raise_for_status()
    run_id: str = resp.json()["id"]
    return run_id


async def wait_all(api: httpx.AsyncClient, run_ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(run_ids)
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} runs unfinished after {timeout}s")
        for run_id in list(pending):
            status = (await api.get(f"/v1/runs/{run_id}/status")).json().get("status")
            if status in TERMINAL:
                if status != "succeeded":
                    raise RuntimeError(f"run {run_id} {status}")
                pending.discard(run_id)
        await asyncio.sleep(0.2)


async def task_times(db: AsyncEngine, run_ids: list[str]) -> list[tuple[float, float, float]]:
    """(ready, started, finished) epoch seconds of every task of the runs."""
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT ready_at, started_at, finished_at FROM tasks "
                "WHERE run_id = ANY(:ids) AND status = 'succeeded' "
                "AND ready_at IS NOT NULL AND started_at IS NOT NULL"
            ),
            {"ids": run_ids},
        )
        return [(r.timestamp(), s.timestamp(), f.timestamp()) for r, s, f in rows]


def percentiles_ms(values: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(qs[49] * 1000, 2),
        "p95": round(qs[94] * 1000, 2),
        "p99": round(qs[98] * 1000, 2),
    }


def throughput(times: list[tuple[float, float, float]]) -> float:
    span = max(f for _, _, f in times) - min(r for r, _, _ in times)
    return len(times) / span


async def distributed(args: argparse.Namespace) -> dict[str, Any]:
    namespace = "bench" + uuid.uuid4().hex[:8]
    cluster = Cluster(
        namespace=namespace,
        log_dir=Path(tempfile.mkdtemp(prefix="cadenza-bench-")),
        env_overrides={
            "CADENZA_WORKER_CONCURRENCY": str(args.worker_concurrency),
            "CADENZA_ORCHESTRATOR_CONCURRENCY": "32",
            "CADENZA_BUS_PARTITIONS": "6",
            "CADENZA_BUS_LINGER_MS": "1",
            "CADENZA_BUS_COMMIT_INTERVAL_S": "0.2",
        },
    )
    db = create_engine(StateSettings(database_schema=namespace))
    try:
        cluster.start_gateway()
        cluster.start_orchestrator()
        for _ in range(args.workers):
            cluster.start_worker()
        async with httpx.AsyncClient(base_url=cluster.url, timeout=60) as api:
            await wait_all(api, [await submit(api, fanout_spec(20))], timeout=120)  # warm-up

            # Phase 1: throughput.
            runs = [
                await submit(api, chain_spec(args.chain)),
                await submit(api, fanout_spec(args.fanout)),
            ]
            await wait_all(api, runs, timeout=600)
            phase1 = await task_times(db, runs)

            # Phase 2: dispatch latency at a fixed offered load.
            load_runs: list[str] = []
            interval = args.batch / args.rate
            started = time.monotonic()
            while time.monotonic() - started < args.duration:
                tick = time.monotonic()
                load_runs.append(await submit(api, fanout_spec(args.batch)))
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))
            offered = len(load_runs) * args.batch / (time.monotonic() - started)
            await wait_all(api, load_runs, timeout=600)
            phase2 = await task_times(db, load_runs)
    except Exception:
        print(cluster.logs(), file=sys.stderr)
        raise
    finally:
        cluster.stop()
        await db.dispose()
        await drop_schema(StateSettings(database_schema=namespace))
    dispatch_load = percentiles_ms([s - r for r, s, _ in phase2])
    dispatch_burst = percentiles_ms([s - r for r, s, _ in phase1])
    return {
        "tasks": len(phase1),
        "tasks_per_s": round(throughput(phase1), 1),
        "chain": args.chain,
        "fanout": args.fanout,
        "burst_dispatch_p50_ms": dispatch_burst["p50"],
        "burst_dispatch_p99_ms": dispatch_burst["p99"],
        "offered_tasks_per_s": round(offered, 1),
        "load_tasks": len(phase2),
        "dispatch_p50_ms": dispatch_load["p50"],
        "dispatch_p95_ms": dispatch_load["p95"],
        "dispatch_p99_ms": dispatch_load["p99"],
    }


async def in_process(args: argparse.Namespace) -> float:
    """The same phase-1 workload on `cadenza dev`'s stack, in this process."""
    from cadenza_cli.dev import DevStack, dev_settings
    from cadenza_runtime import open_resources

    with tempfile.TemporaryDirectory() as tmp:
        resources = await open_resources(*dev_settings(Path(tmp)))
        stack = DevStack(resources, port=0, data_dir=Path(tmp))
        await stack.start()
        try:
            async with httpx.AsyncClient(base_url=stack.url, timeout=60) as api:
                runs = [
                    await submit(api, chain_spec(args.chain)),
                    await submit(api, fanout_spec(args.fanout)),
                ]
                t0 = time.monotonic()
                await wait_all(api, runs, timeout=600)
                return (args.chain + args.fanout) / (time.monotonic() - t0)
        finally:
            await stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=500.0, help="offered load, tasks/s")
    parser.add_argument("--batch", type=int, default=10, help="parallel tasks per load run")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of offered load")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(distributed(args))
    if not args.no_baseline:
        baseline = asyncio.run(in_process(args))
        result["inprocess_tasks_per_s"] = round(baseline, 1)
        result["ratio_vs_inprocess"] = round(result["tasks_per_s"] / baseline, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""The agent worker's own cost per no-op task, in this process, without Kafka or the
orchestrator: the other half of bench/orchestrator_step.py.

    uv run cadenza infra up
    uv run python bench/worker_step.py              # about 15 s

The worker's handler (``Worker.handle``, what its consumer calls for each ``task.ready``)
runs here on the real Redis, with the in-memory bus in place of Kafka. Its publish is a
list append, so the Kafka client's cost is left out. Rows:
- alone: ``--tasks`` tasks handed over one at a time, as a chain's steps arrive:
  ``alone_task_cpu_us`` and ``alone_task_wall_us``, medians after ``--warmup``. Each is
  the claim (one Lua script), the no-op under its timeout, the result and its run events
  published, and the finish (one Lua script).
- together: ``--tasks`` tasks handed over ``--batch`` at a time, as a fetch brings them
  (their claims and finishes share one Redis pipeline per turn of the loop):
  ``together_task_cpu_us`` per task.
- baseline: one Lua script call on the same Redis (``raw_script_*``, medians).
  ``ratio_alone_task_vs_raw_script``: a task alone in such round trips.
The LAST line printed is the JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import uvloop
from cadenza_events import BusSettings, Envelope, TaskReady, Topic
from cadenza_state import StateSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_support import task_envelope, timed


def ready(run_id: str, n: int) -> Envelope[TaskReady]:
    task_id = f"{run_id}.t{n}"
    payload = TaskReady(
        run_id=run_id, task_id=task_id, node_id=f"t{n}", name="noop", params={}, approval={}
    )
    return task_envelope(payload, "/bench/orchestrator", run_id, task_id)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from cadenza_runtime import open_resources, tune_gc
    from cadenza_worker import Worker, WorkerSettings

    prefix = "benchworker" + uuid.uuid4().hex[:8]
    state = StateSettings(
        redis_key_prefix=f"{prefix}:",
        object_store="local",
        object_store_dir=Path(tempfile.mkdtemp(prefix="cadenza-bench-worker-")),
    )
    bus = BusSettings(backend="memory", topic_prefix=f"{prefix}.")
    resources = await open_resources(bus, state, start_relay=False)
    out: dict[str, Any] = {}
    hot = resources.hot.redis
    try:
        worker = Worker(resources, WorkerSettings(worker_id=f"{prefix}-w"))
        tune_gc()  # as every service does once started
        script = hot.register_script("return redis.call('exists', KEYS[1])")
        key = resources.hot.key("probe")
        samples = [await timed(lambda: script(keys=[key])) for _ in range(args.repeat)]
        samples = samples[args.repeat // 10 :]  # warm first
        out["raw_script_wall_us"] = round(statistics.median(s[0] for s in samples) * 1e6, 1)
        out["raw_script_cpu_us"] = round(statistics.median(s[1] for s in samples) * 1e6, 1)

        run_id = str(uuid.uuid4())
        alone = [
            await timed(lambda n=n: worker.handle(ready(run_id, n))) for n in range(args.tasks)
        ][args.warmup :]
        out["alone_task_wall_us"] = round(statistics.median(s[0] for s in alone) * 1e6, 1)
        out["alone_task_cpu_us"] = round(statistics.median(s[1] for s in alone) * 1e6, 1)

        run_id = str(uuid.uuid4())
        envs = [ready(run_id, n) for n in range(args.tasks)]
        cpu = 0.0
        for start in range(0, len(envs), args.batch):
            chunk = envs[start : start + args.batch]
            cpu += (await timed(lambda c=chunk: asyncio.gather(*map(worker.handle, c))))[1]
        out["together_task_cpu_us"] = round(cpu / len(envs) * 1e6, 1)

        topic = resources.registry.name(Topic.TASK_RESULT)
        results = [json.loads(m.value) for p in resources.bus.broker.topics[topic] for m in p]
        if len(results) != 2 * args.tasks:  # every task must have reported, once
            raise SystemExit(f"{len(results)} results for {2 * args.tasks} tasks")
        if any(r["status"] != "succeeded" for r in results):
            raise SystemExit("a no-op task did not succeed")
        await worker.stop()
    finally:
        async for stale in hot.scan_iter(match=resources.hot.key("*"), count=1000):
            await hot.delete(stale)
        await resources.close()
    out["ratio_alone_task_vs_raw_script"] = round(
        out["alone_task_cpu_us"] / out["raw_script_cpu_us"], 1
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200, help="alone tasks not counted")
    parser.add_argument("--batch", type=int, default=100, help="tasks handed over together")
    parser.add_argument("--repeat", type=int, default=2000, help="script calls of the baseline")
    args = parser.parse_args()
    if args.tasks <= args.warmup:
        parser.error("--tasks must be more than --warmup")
    print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()

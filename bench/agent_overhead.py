"""Agent overhead benchmark: what an agent turn costs beyond the model itself.

    uv run python bench/agent_overhead.py [--tasks 10] [--real]

Runs agent tasks (one tool call, then an answer: two LLM turns) on the worker with the
embedded model (`local:smollm2-135m`) and reports, from the `llm_calls` rows and the task
results:
- the embedded model's tokens/s (output tokens over model time);
- per turn, the task's wall time minus its model time — LangGraph step + checkpoint write +
  accounting rows + tool call + run events — p50/p99;
- baseline, in the same process: a `noop` tool task's wall time, and the ratio.
In-process stack (memory bus, SQLite) by default; `--real` uses PostgreSQL, Redis, MinIO
and Kafka from `cadenza infra up`. The LAST line printed is the JSON result.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "worker"))

from cadenza_events import Topic  # noqa: E402
from cadenza_runtime import open_resources  # noqa: E402
from cadenza_state import AgentRecord, LLMCallRecord  # noqa: E402
from sqlalchemy import select  # noqa: E402
from worker_support import Stack, memory_settings, real_settings  # noqa: E402

AGENT = {
    "name": "bench-agent",
    "system_prompt": "You are a calculator assistant. Use the calculator tool, then answer.",
    "model": "local:smollm2-135m",
    "tools": ["calculator"],
    "max_iterations": 2,  # turn 1 may call the tool; turn 2 must answer
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    uid = f"b{uuid.uuid4().hex[:10]}"
    tmp = Path(tempfile.mkdtemp(prefix="cadenza-bench-"))
    bus, state = real_settings(uid) if args.real else memory_settings(uid, tmp)
    resources = await open_resources(bus, state)
    stack = Stack("real" if args.real else "memory", uid, resources)
    observer = resources.bus.consumer([Topic.TASK_RESULT], f"{uid}-obs", stack._collect)
    await observer.start()
    try:
        async with resources.sessions() as session, session.begin():
            session.add(AgentRecord(tenant_id="acme", name=AGENT["name"], version=1, spec=AGENT))
        await stack.start_worker(concurrency=1)

        # Baseline: no-op tool tasks, same process, same worker.
        baseline = []
        for _ in range(args.tasks):
            task = await stack.add_task("noop", {})
            started = time.perf_counter()
            await stack.dispatch(task)
            await stack.result(task, timeout=60)
            baseline.append(time.perf_counter() - started)

        walls, overheads, model_s, out_tokens, turns = [], [], 0.0, 0, 0
        for i in range(args.tasks):
            prompt = f"What is {17 + i} * {3 + i}?"
            task = await stack.add_task(
                f"{AGENT['name']}@1", {"prompt": prompt}, kind="agent", timeout_s=600
            )
            started = time.perf_counter()
            await stack.dispatch(task)
            result = await stack.result(task, timeout=300)
            wall = time.perf_counter() - started
            assert result.status == "succeeded", result.error
            async with resources.sessions() as session:
                rows = (
                    await session.execute(
                        select(LLMCallRecord).where(LLMCallRecord.task_id == task.task_id)
                    )
                ).scalars()
                calls = list(rows)
            model = sum(c.latency_ms for c in calls) / 1000
            walls.append(wall)
            overheads.append((wall - model) / len(calls))
            model_s += model
            out_tokens += sum(c.output_tokens for c in calls)
            turns += len(calls)
    finally:
        for worker in stack.workers:
            await worker.stop()
        await observer.stop(grace_s=1)
        await resources.close()
    base_p50 = statistics.median(baseline)
    over_p50 = statistics.median(overheads)
    return {
        "bench": "agent_overhead",
        "stack": stack.kind,
        "tasks": args.tasks,
        "turns": turns,
        "model_tokens_per_s": round(out_tokens / model_s, 1) if model_s else None,
        "task_wall_p50_s": round(statistics.median(walls), 3),
        "overhead_per_turn_p50_ms": round(over_p50 * 1000, 2),
        "overhead_per_turn_p99_ms": round(pct(overheads, 0.99) * 1000, 2),
        "baseline_noop_task_p50_ms": round(base_p50 * 1000, 2),
        "overhead_per_turn_vs_noop_task": round(over_p50 / base_p50, 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--real", action="store_true", help="PostgreSQL/Redis/Kafka/MinIO")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))

"""What recording run events costs Redis: the gateway's recorder appends every run event to
its run's log (``cadenza_runtime.RunEventLog``), one Lua call per run and fetch.

    uv run cadenza infra up
    uv run python bench/run_event_log.py            # about 10 s

Records are made as the orchestrator makes them (``RunEventBatch`` of a transition's
events) and handed to ``RunEventRecorder.handle_batch`` as a fetch brings them, on the real
Redis (``CADENZA_REDIS_URL``), keys under a prefix of their own (deleted after). Rows:
- fan-out: ``--runs`` runs, each ``--records`` records of ``--events`` events (a fan-out's
  transitions: up to 250 events each): ``fanout_redis_us_per_event`` (the server's CPU, from
  ``INFO cpu``) and ``fanout_client_us_per_event`` (this process: decoding nothing, the
  bodies and the call).
- small: the same events in records of ``--small-events`` (3: a no-op task's ready,
  started and finished, each transition on its own): ``small_*``.
- baseline: the same bodies appended with one plain ``XADD`` each, pipelined (no dedupe,
  no numbering: the floor of a log in a stream), ``xadd_redis_us_per_event``, and the ratios
  ``ratio_fanout_vs_xadd``, ``ratio_small_vs_xadd``.
The LAST line printed is the JSON result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from statistics import median
from typing import Any

import uvloop
from cadenza_events import Envelope, MemoryBus, RunEvent, RunEventBatch
from cadenza_runtime import RunEventLog, RunEventRecorder
from cadenza_runtime.run_events import _body, _events_of
from cadenza_state import HotState, utcnow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.cleanup import prefixed_hot_state


def records_of(run_id: str, count: int, size: int) -> list[Envelope[RunEventBatch]]:
    """``count`` records of ``size`` task events of one run, as a fan-out's transitions."""
    now, out = utcnow(), []
    for r in range(count):
        events = [
            RunEvent(
                run_id=run_id,
                kind="task.finished",
                task_id=f"{run_id}.fan.{r * size + i}",
                node_id="fan",
                status="succeeded",
                data={"attempt": 1, "item_index": r * size + i, "tries": 1},
                at=now,
            )
            for i in range(size)
        ]
        out.append(
            Envelope(
                RunEventBatch(run_id=run_id, events=events),
                source="/bench/orchestrator",
                tenant_id="bench",
                plan_id=run_id,
            )
        )
    return out


async def server_cpu_s(hot: HotState) -> float:
    info: dict[str, Any] = await hot.redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def row(
    hot: HotState, recorder: RunEventRecorder, runs: int, count: int, size: int
) -> tuple[float, float]:
    """Redis and client µs of CPU per event: each run's records in one handle_batch."""
    fetches = [records_of(str(uuid.uuid4()), count, size) for _ in range(runs)]
    server, client = await server_cpu_s(hot), time.process_time()
    for records in fetches:
        await recorder.handle_batch(records)
    events = runs * count * size
    return (
        (await server_cpu_s(hot) - server) / events * 1e6,
        (time.process_time() - client) / events * 1e6,
    )


async def xadd_row(hot: HotState, runs: int, count: int, size: int) -> float:
    """Redis µs of CPU per event for the same bodies as plain pipelined XADDs."""
    fetches = [records_of(str(uuid.uuid4()), count, size) for _ in range(runs)]
    server = await server_cpu_s(hot)
    for records in fetches:
        pipe = hot.redis.pipeline(transaction=False)
        for record in records:
            for item in _events_of(record):
                pipe.xadd(hot.key(f"xadd:{item.event.run_id}"), {"e": _body(item)})
        await pipe.execute()
    return (await server_cpu_s(hot) - server) / (runs * count * size) * 1e6


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": args.runs, "records": args.records, "events": args.events}
    # The bench's keys under a prefix of their own, deleted afterwards.
    async with prefixed_hot_state("redis", f"benchlog{uuid.uuid4().hex[:8]}:") as hot:
        recorder = RunEventRecorder(MemoryBus(), RunEventLog(hot))  # handle_batch only
        await row(hot, recorder, 5, args.records, args.events)  # warm: script loaded, pool
        fan, small, floor = [], [], []
        for _ in range(args.rounds):  # alternated: the machine's drift hits every row
            fan.append(await row(hot, recorder, args.runs, args.records, args.events))
            small.append(await row(hot, recorder, args.runs, args.small_records, 3))
            floor.append(await xadd_row(hot, args.runs, args.records, args.events))
    xadd = median(floor)
    out["fanout_redis_us_per_event"] = round(median(r for r, _ in fan), 2)
    out["fanout_client_us_per_event"] = round(median(c for _, c in fan), 2)
    out["small_redis_us_per_event"] = round(median(r for r, _ in small), 2)
    out["small_client_us_per_event"] = round(median(c for _, c in small), 2)
    out["xadd_redis_us_per_event"] = round(xadd, 2)
    out["ratio_fanout_vs_xadd"] = round(out["fanout_redis_us_per_event"] / xadd, 2)
    out["ratio_small_vs_xadd"] = round(out["small_redis_us_per_event"] / xadd, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--records", type=int, default=4, help="records per run (fan-out row)")
    parser.add_argument("--events", type=int, default=250, help="events per record (fan-out)")
    parser.add_argument("--small-records", type=int, default=333, help="records per run (small)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.environ.get("CADENZA_REDIS_BACKEND", "redis") != "redis":
        raise SystemExit("this bench needs the real Redis (CADENZA_REDIS_BACKEND=redis)")
    print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()

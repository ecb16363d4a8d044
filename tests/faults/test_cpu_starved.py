"""With the CPU starved — one busy-loop process per core beside the services — a run of 300
journaled side effects on two workers finishes with no live worker's task dispatched
again: no attempt declared lost (worker_lost / not_started / result_lost), no task with
attempt > 1, each effect once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.drills import (
    assert_exactly_once,
    attempts_above_one,
    deployment,
    effect_fan_out,
    finished,
    redispatches,
    start_run,
    task_facts,
)

pytestmark = pytest.mark.timeout(240)

WIDTH = 300


@contextmanager
def busy_loops(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield hogs
    finally:
        for hog in hogs:  # only the processes started here, by their pid
            hog.kill()
            hog.wait(10)


async def test_cpu_starved_workers_keep_their_tasks(
    unique_id: str, tmp_path: Path, require_services: Callable[..., None]
) -> None:
    require_services("kafka", "postgres", "redis", "minio")
    async with deployment(unique_id, tmp_path, workers=2) as (_, api, db):
        with busy_loops(os.cpu_count() or 2):
            run_id = await start_run(api, effect_fan_out("starved", WIDTH))
            run = await finished(api, run_id, timeout=180)
        lost = await redispatches(db, [run_id])
        twice = await attempts_above_one(db, [run_id])
        assert lost == [], f"{len(lost)} live tasks re-dispatched under CPU load: {lost[:10]}"
        assert twice == [], twice[:10]
        assert_exactly_once(run, await task_facts(db, run_id))
        fan_in = next(t for t in run["tasks"] if t["node_id"] == "fan_in")
        assert fan_in["output"] == {"calls": WIDTH}

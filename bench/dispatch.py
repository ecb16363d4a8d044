"""Dispatch benchmark: no-op tool tasks through real Kafka, PostgreSQL and Redis with the
gateway, orchestrator and workers as separate processes.

    uv run python bench/dispatch.py --quick              # every row, small sizes, ~2-3 min
    uv run python bench/dispatch.py                      # the issue's sizes

Rows, all measured in the same run, one after the other (never two at once):
- chain: a chain of `--chain` no-op tasks alone; chain_step_ms = span / length;
  chain_step_parts_ms = its medians: dispatch (ready → started), run, result (finished →
  the next task's ready). chain_step_split_ms cuts a step where its task.ready and its
  task.result were sent (their Kafka CreateTime): ready_to_sent, sent_to_started, run,
  finished_to_result_sent, result_sent_to_ready. A row's span runs from its first task's
  `ready` to the later of its last task's `finished` and its runs' `finished_at` (the
  engine has applied every result by then), database timestamps.
  chain_batch_phases_ms: the orchestrator's batches over the row (its /metrics'
  cadenza_orchestrator_batch_phase_seconds): their number and the mean ms per batch of
  each phase — apply, write (the statement and its commit), queued, publish, hot_status.
- fan-out: a fan-out of `--fanout` alone; fanout_tasks_per_s = tasks / span; fanout_run_s =
  the run's created_at → finished_at (gateway insert, plan, tasks, close).
- combined: the chain and the fan-out submitted together (tasks_per_s, as before).
- big fan-out: a fan-out of `--big-fanout` (0 disables). When the engine caps a for_each
  below that (cadenza_workflow.MAX_FAN_OUT), the fan-out is split into sibling for_each
  tasks of at most that many items (`bigfanout_nodes` says how many).
- idle: every process's CPU over `--idle` s with the services up and nothing submitted
  (idle_cpu_pct: percent of one core, all of them; idle_cpu_pct_by per component), before
  the rows below; 0 skips it.
- CPU: utime+stime from /proc of every process — gateway, orchestrator, workers, the Kafka
  broker, PostgreSQL (the postmaster and all its children, reaped ones through its cutime)
  and Redis — before and after each throughput row; cpu_ms_per_task over the four rows and
  per component. The servers are found by their listening ports; on a shared machine they
  also serve others' work, which lands in these figures.
- WAL: PostgreSQL's write-ahead log written over the same rows (wal_kb_per_task) and the
  latency row (load_wal_kb_per_run): what the engine's writes cost the database's disk,
  and its replicas' network, per task.
- latency: an open-loop offered load of `--rate` tasks/s (a run of `--batch` parallel
  tasks every batch/rate s) for `--duration` s; dispatch = ready in the orchestrator →
  started in a worker, p50/p95/p99; split where the `task.ready` was sent (its Kafka
  record's CreateTime): dispatch_commit (ready → sent) and dispatch_hop (sent → started);
  load_batch_phases_ms: the orchestrator's batch phases over the row, as the chain's.
- scaling: the fan-out of `--fanout` with each worker count of `--scaling`. Workers start
  once, all together, and are stopped count by count (4, 2 + the rows above, 1).
- ceiling: the same four Kafka hops with no state (bench/dispatch_ceiling.py: one process
  per role, `--workers` workers) for the chain, the fan-outs and the two together (the
  combined row: `ceiling_tasks_per_s`, the engine's `tasks_per_s` with no state), on
  cadenza_events' KafkaBus (`ceiling_*`) and on bare aiokafka (`ceiling_raw_*`), and the
  ratios engine / ceiling.
  The bus ceiling also takes the offered load (`ceiling_dispatch_p50/p99_ms`: a ready's
  publish → the worker's start, the floor of the engine's dispatch on this machine).
- planning: plan.requested handled in this process by the orchestrator's handler against
  the real PostgreSQL (a fresh schema) for layered DAGs and fan-outs of `--plan-sizes`
  tasks; ms to the commit and µs per task+edge (linearity: compare the sizes).
- profile (`--profile DIR`): py-spy samples the gateway, the orchestrator and each worker
  through the offered load (200 Hz, collapsed stacks in DIR/<role>-<pid>.txt) and
  bench/profile_summary.py writes where each spent its time to DIR/summary.txt.
- broker_uptime_s: how long the Kafka broker had been up when the bench began. A broker
  started minutes before (a first run after `cadenza infra up`) spends 2-3x the CPU per
  task on the engine's traffic for its first minutes (0.38 against 0.13 ms measured), so
  every engine row reads slower while the ceiling's, measured later, do not: the bench
  warns below 600 s. Warming it with the ceiling's fan-outs (90 s) or the engine's (60 s)
  was tried and not kept: the first left half the excess, the second filled Redis, whose
  snapshots then cost the rows as much.
- baseline: the combined row on the in-process stack (`cadenza dev`: memory bus, SQLite)
  in this process (`--no-baseline` skips it).
The LAST line printed is the JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import cadenza_workflow
import httpx
from aiokafka import AIOKafkaConsumer
from cadenza_events import BusSettings
from cadenza_events.kafka import KafkaBus
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import profile_summary  # noqa: E402  (bench/, next to this script)
from cadenza_state import StateSettings, create_engine  # noqa: E402
from support.cleanup import drop_schema, prefixed_hot_state  # noqa: E402
from support.cluster import Cluster, ServiceProcess, free_port  # noqa: E402

TERMINAL = {"succeeded", "failed", "cancelled"}
SERVER_PORTS = {"kafka": 19092, "postgres": 15432, "redis": 16379}
STARTED_CLUSTERS: list[Cluster] = []
STARTED_PIDS: list[int] = []
"""Everything this script started, stopped again in main() whatever happens."""

# -- specs ----------------------------------------------------------------------------------


def chain_spec(length: int) -> dict[str, Any]:
    tasks = [{"id": "t0", "kind": "tool", "tool": "noop"}]
    tasks += [
        {"id": f"t{i}", "kind": "tool", "tool": "noop", "needs": [f"t{i - 1}"]}
        for i in range(1, length)
    ]
    return {"name": "bench-chain", "tasks": tasks}


def fanout_spec(width: int) -> dict[str, Any]:
    """A fan-out of ``width`` instances: one for_each, or sibling for_each tasks of at most
    ``MAX_FAN_OUT`` items each when the engine caps a for_each below ``width``."""
    cap = getattr(cadenza_workflow, "MAX_FAN_OUT", None) or width
    nodes = max(1, math.ceil(width / cap))
    sizes = [min(cap, width - k * cap) for k in range(nodes)]
    return {
        "name": f"bench-fanout-{width}",
        "tasks": [
            {
                "id": "each" if nodes == 1 else f"each{k}",
                "kind": "tool",
                "tool": "noop",
                "for_each": f"list(range({n}))",
            }
            for k, n in enumerate(sizes)
        ],
    }


def layered_spec(tasks: int, fan_in: int = 2) -> tuple[dict[str, Any], int]:
    """A layered DAG of ``tasks`` no-op tasks, √tasks per layer (100 layers of 100 for 10,000), each
    task after the first layer needing ``fan_in`` tasks of the layer before. Returns (spec,
    edges)."""
    width = max(fan_in, math.isqrt(tasks))
    out: list[dict[str, Any]] = []
    edges = 0
    for i in range(tasks):
        layer, pos = divmod(i, width)
        task: dict[str, Any] = {"id": f"n{i}", "kind": "tool", "tool": "noop"}
        if layer:
            prev = (layer - 1) * width
            needs = sorted({f"n{prev + (pos + k) % width}" for k in range(fan_in)})
            task["needs"] = needs
            edges += len(needs)
        out.append(task)
    return {"name": f"bench-dag-{tasks}", "tasks": out}, edges


# -- the gateway and the database -----------------------------------------------------------


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
        await asyncio.sleep(0.1)


async def runs_finished(db: AsyncEngine, run_ids: list[str]) -> float:
    """When the engine closed the last of these runs (epoch seconds): the orchestrator has
    applied every result by then, which a task's ``finished_at`` (the worker's clock when
    the task returned) does not say."""
    async with db.connect() as conn:
        last = await conn.scalar(
            text("SELECT max(finished_at) FROM runs WHERE id = ANY(:ids)"), {"ids": run_ids}
        )
    return float(last.timestamp())


async def wait_runs(
    db: AsyncEngine, run_ids: list[str], timeout: float, stall_s: float = 120.0
) -> None:
    """Wait until the runs are closed, reading ``runs.status`` (one query per poll, so
    waiting costs the services next to nothing; polling the gateway per run would load it
    and show in its CPU). Fails when no task of these runs has finished for ``stall_s``
    (a stuck engine: see the services' logs printed with the error)."""
    deadline = time.monotonic() + timeout
    pending = set(run_ids)
    progress_at, last, polls = time.monotonic(), (-1, -1), 0
    async with db.connect() as conn:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} runs unfinished after {timeout}s")
            rows = await conn.execute(
                text("SELECT id, status FROM runs WHERE id = ANY(:ids) AND status = ANY(:done)"),
                {"ids": sorted(pending), "done": sorted(TERMINAL)},
            )
            for run_id, status in rows:
                if status != "succeeded":
                    raise RuntimeError(f"run {run_id} {status}")
                pending.discard(run_id)
            polls += 1
            if pending and polls % 50 == 0:  # every ~5 s: is anything still moving?
                done = await conn.scalar(
                    text(
                        "SELECT count(*) FROM tasks WHERE run_id = ANY(:ids) AND status = ANY(:done)"
                    ),
                    {"ids": run_ids, "done": sorted(TERMINAL)},
                )
                if (done, len(pending)) != last:
                    progress_at, last = time.monotonic(), (done, len(pending))
                elif time.monotonic() - progress_at > stall_s:
                    raise TimeoutError(
                        f"stalled: {len(pending)} runs pending, no task finished for {stall_s:.0f}s"
                    )
            await conn.rollback()  # a fresh snapshot next time
            if pending:
                await asyncio.sleep(0.1)


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


async def submit_to_start(db: AsyncEngine, run_ids: list[str]) -> list[float]:
    """Seconds from each run's submission (``runs.created_at``, the gateway's insert) to
    each of its tasks' ``started_at``: what a user waits for, including the plan request's
    wait in Kafka and in the orchestrator, which ``dispatch`` (from ``ready_at``) leaves out."""
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT r.created_at, t.started_at FROM tasks t JOIN runs r ON r.id = t.run_id "
                "WHERE t.run_id = ANY(:ids) AND t.status = 'succeeded' "
                "AND t.started_at IS NOT NULL AND t.item_index IS NOT NULL"
            ),
            {"ids": run_ids},
        )
        return [s.timestamp() - c.timestamp() for c, s in rows]


async def dispatch_split(
    db: AsyncEngine, run_ids: list[str], ready_topic: str
) -> list[tuple[float, float]]:
    """Each task's dispatch in two parts, split where its ``task.ready`` was sent (the
    record's CreateTime in Kafka): ``ready_at`` → sent (the orchestrator's commit; a results
    batch's early dispatch sends as its statement leaves, before the commit) and sent →
    ``started_at`` (the Kafka hop and the worker's claim). The outbox row that carried it
    is deleted once published, so the log is the record of when."""
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, ready_at, started_at FROM tasks "
                    "WHERE run_id = ANY(:ids) AND status = 'succeeded' "
                    "AND ready_at IS NOT NULL AND started_at IS NOT NULL"
                ),
                {"ids": run_ids},
            )
        ).all()
    sent = await sent_at(ready_topic, {task_id for task_id, _, _ in rows})
    return [(sent[t] - r.timestamp(), s.timestamp() - sent[t]) for t, r, s in rows if t in sent]


async def sent_at(topic: str, task_ids: set[str]) -> dict[str, float]:
    """When the ``task.ready`` of each of ``task_ids`` was sent to ``topic``: its CreateTime
    (epoch seconds), by the record's task id header (a run's few tasks share their run's
    key), read from the start of every partition to its end. CreateTime has whole
    milliseconds (the producer's clock at ``send``, rounded down): each is moved to the
    middle of its millisecond, so the two parts of a split are not biased by half of one."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BusSettings().bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()  # no group: every partition is assigned at once
    try:
        while not consumer.assignment():  # noqa: ASYNC110 (aiokafka sets it, no event)
            await asyncio.sleep(0.05)
        ends = await consumer.end_offsets(list(consumer.assignment()))
        found: dict[str, float] = {}
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    task_id = next(
                        (v.decode() for name, v in record.headers if name == "ce_taskid"), ""
                    )
                    if task_id in task_ids:
                        found[task_id] = (record.timestamp + 0.5) / 1000
        return found
    finally:
        await consumer.stop()


async def worker_ids(db: AsyncEngine, run_id: str) -> set[str]:
    async with db.connect() as conn:
        rows = await conn.execute(
            text("SELECT DISTINCT worker_id FROM tasks WHERE run_id = :id AND worker_id <> ''"),
            {"id": run_id},
        )
        return {r for (r,) in rows if r}


async def wal_position(db: AsyncEngine) -> int:
    """PostgreSQL's current WAL insert position, in bytes."""
    async with db.connect() as conn:
        lsn = await conn.scalar(text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"))
        return int(lsn)


async def run_seconds(db: AsyncEngine, run_id: str) -> float:
    """The run's created_at → finished_at (gateway insert → the engine closing it)."""
    async with db.connect() as conn:
        created, finished = (
            await conn.execute(
                text("SELECT created_at, finished_at FROM runs WHERE id = :id"), {"id": run_id}
            )
        ).one()
    return float((finished - created).total_seconds())


def percentiles_ms(values: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(qs[49] * 1000, 2),
        "p95": round(qs[94] * 1000, 2),
        "p99": round(qs[98] * 1000, 2),
    }


def chain_parts_ms(times: list[tuple[float, float, float]]) -> dict[str, float]:
    """Where a chain step goes, medians in ms: ``dispatch`` (``ready_at`` → ``started_at``:
    the orchestrator's commit and send, Kafka, the worker's fetch and claim), ``run`` (the
    no-op on the worker, to ``finished_at``) and ``result`` (``finished_at`` → the next
    task's ``ready_at``: the worker's send, Kafka, the orchestrator's fetch and apply)."""
    steps = sorted(times)
    return {
        "dispatch": round(statistics.median(s - r for r, s, _ in steps) * 1000, 2),
        "run": round(statistics.median(f - s for _, s, f in steps) * 1000, 2),
        "result": round(
            statistics.median(nxt[0] - prev[2] for prev, nxt in pairwise(steps)) * 1000, 2
        ),
    }


async def chain_split_ms(
    db: AsyncEngine, run_ids: list[str], ready_topic: str, result_topic: str
) -> dict[str, float]:
    """A chain step cut where its two records were sent (their CreateTime in Kafka), medians
    in ms: ``ready_to_sent`` (the orchestrator, from its transition to handing the
    task.ready to the producer), ``sent_to_started`` (the Kafka hop, the worker's fetch and
    claim), ``run``, ``finished_to_result_sent`` (the worker's report) and
    ``result_sent_to_ready`` (the Kafka hop, the orchestrator's fetch and transition, to the
    next task's ``ready_at``). CreateTime has whole milliseconds (±0.5 ms each)."""
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, ready_at, started_at, finished_at FROM tasks "
                    "WHERE run_id = ANY(:ids) AND status = 'succeeded' "
                    "AND ready_at IS NOT NULL AND started_at IS NOT NULL ORDER BY ready_at"
                ),
                {"ids": run_ids},
            )
        ).all()
    ids = {task_id for task_id, *_ in rows}
    ready_sent = await sent_at(ready_topic, ids)
    result_sent = await sent_at(result_topic, ids)
    parts: dict[str, list[float]] = {
        "ready_to_sent": [],
        "sent_to_started": [],
        "run": [],
        "finished_to_result_sent": [],
        "result_sent_to_ready": [],
    }
    for (task_id, ready, started, finished), nxt in zip(rows, [*rows[1:], None], strict=True):
        if task_id not in ready_sent or task_id not in result_sent:
            continue
        parts["ready_to_sent"].append(ready_sent[task_id] - ready.timestamp())
        parts["sent_to_started"].append(started.timestamp() - ready_sent[task_id])
        parts["run"].append((finished - started).total_seconds())
        parts["finished_to_result_sent"].append(result_sent[task_id] - finished.timestamp())
        if nxt is not None:
            parts["result_sent_to_ready"].append(nxt[1].timestamp() - result_sent[task_id])
    return {
        name: round(statistics.median(values) * 1000, 2) for name, values in parts.items() if values
    }


def fanout_parts_ms(times: list[tuple[float, float, float]], closed: float) -> dict[str, float]:
    """Where a fan-out's span goes, in ms from its first ``ready_at`` (the plan's
    transition): ``first_start`` (the plan's commit, its first ``task.ready`` sent, fetched
    and claimed), ``half_started`` and ``all_started`` (the dispatch front: the orchestrator
    publishing, the workers fetching), ``all_finished`` (the workers' last result) and
    ``closed`` (the orchestrator has applied every result: the tail after the workers)."""
    first = min(r for r, _, _ in times)
    starts = sorted(s for _, s, _ in times)
    return {
        "first_start": round((starts[0] - first) * 1000, 1),
        "half_started": round((starts[len(starts) // 2] - first) * 1000, 1),
        "all_started": round((starts[-1] - first) * 1000, 1),
        "all_finished": round((max(f for _, _, f in times) - first) * 1000, 1),
        "closed": round((closed - first) * 1000, 1),
    }


def span(times: list[tuple[float, float, float]], closed: float = 0.0) -> float:
    """First ``ready`` → the later of the last ``finished`` and the runs' close."""
    return max(closed, *(f for _, _, f in times)) - min(r for r, _, _ in times)


STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- CPU accounting from /proc --------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _tree(root: int, children: dict[int, list[int]]) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def listening_pid(port: int) -> int | None:
    """The process holding the listening TCP socket of ``port`` (needs to read its fds)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = list(os.scandir(f"/proc/{entry.name}/fd"))
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                if os.readlink(fd.path) in inodes:
                    return int(entry.name)
            except OSError:  # this fd closed meanwhile: the next may be the socket (a
                continue  # broker with a thousand files open closes some all the time)
    return None


@dataclass
class CpuMeter:
    """CPU seconds (user + system) per component; a component is a set of root pids, each
    counted with all its descendants alive at sampling time, plus the CPU of its reaped
    children (cutime + cstime of the roots: PostgreSQL backends that disconnected).
    Roots are looked up at every sample: a server restarted by someone else between two
    samples shows up in ``warnings`` (its delta is then not comparable)."""

    roots: dict[str, Callable[[], list[int]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def sample(self) -> dict[str, tuple[float, frozenset[int]]]:
        children = _children_map()
        out: dict[str, tuple[float, frozenset[int]]] = {}
        for name, roots_of in self.roots.items():
            ticks = 0
            roots = roots_of()
            for root in roots:
                for pid in _tree(root, children):
                    fields = _stat_fields(pid)
                    if fields is None:
                        continue
                    ticks += int(fields[11]) + int(fields[12])  # utime, stime
                    if pid == root:
                        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
            out[name] = (ticks / CLK_TCK, frozenset(roots))
        return out

    def delta(
        self,
        before: dict[str, tuple[float, frozenset[int]]],
        after: dict[str, tuple[float, frozenset[int]]],
    ) -> dict[str, float]:
        used: dict[str, float] = {}
        for name, (seconds, roots) in after.items():
            was, old_roots = before.get(name, (0.0, frozenset()))
            if roots != old_roots:
                self.warnings.append(f"{name}: processes changed during a row (restart?)")
            used[name] = max(0.0, seconds - was)
        return used


def server_roots() -> dict[str, Callable[[], list[int]]]:
    """The Kafka, PostgreSQL and Redis server processes, by their listening ports."""

    def of(name: str, port: int) -> Callable[[], list[int]]:
        def roots() -> list[int]:
            pid = listening_pid(port)
            if pid is None:
                print(f"cpu: nothing listens on {port} ({name})", file=sys.stderr)
            return [] if pid is None else [pid]

        return roots

    return {name: of(name, port) for name, port in SERVER_PORTS.items()}


def cluster_roots(cluster: Cluster) -> dict[str, Callable[[], list[int]]]:
    def of(name: str) -> Callable[[], list[int]]:
        return lambda: [
            p.proc.pid for p in cluster.processes if p.name == name and p.proc.poll() is None
        ]

    return {"gateway": of("gateway"), "orchestrator": of("orchestrator"), "workers": of("worker")}


@dataclass
class CpuTally:
    seconds: dict[str, float] = field(default_factory=dict)
    tasks: int = 0

    def add(self, used: dict[str, float], tasks: int) -> None:
        for k, v in used.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v
        self.tasks += tasks

    def per_task_ms(self) -> dict[str, float]:
        return {k: round(v * 1000 / max(1, self.tasks), 3) for k, v in self.seconds.items()}

    def total_ms(self) -> float:
        return round(sum(self.seconds.values()) * 1000 / max(1, self.tasks), 3)


# -- the distributed engine -----------------------------------------------------------------


@dataclass
class Engine:
    cluster: Cluster
    api: httpx.AsyncClient
    db: AsyncEngine
    meter: CpuMeter
    ready_topic: str
    """The ``task.ready`` topic's full name (the bench's own prefix)."""
    result_topic: str
    """The ``task.result`` topic's full name."""
    cpu: CpuTally = field(default_factory=CpuTally)
    wal_bytes: int = 0
    """PostgreSQL's WAL written during the metered rows (every database's, so the engine's)."""
    orchestrator_metrics: str = ""
    """The orchestrator's /metrics URL (its batch phases); empty: not served."""

    async def batch_phases(self) -> dict[str, tuple[float, float]]:
        """``cadenza_orchestrator_batch_phase_seconds`` now: per phase, (sum, count)."""
        if not self.orchestrator_metrics:
            return {}
        resp = await self.api.get(self.orchestrator_metrics)
        resp.raise_for_status()
        out: dict[str, tuple[float, float]] = {}
        for family in text_string_to_metric_families(resp.text):
            if family.name != "cadenza_orchestrator_batch_phase_seconds":
                continue
            for sample in family.samples:
                total, count = out.get(sample.labels.get("phase", ""), (0.0, 0.0))
                if sample.name.endswith("_sum"):
                    total = sample.value
                elif sample.name.endswith("_count"):
                    count = sample.value
                else:
                    continue
                out[sample.labels["phase"]] = (total, count)
        return out

    def workers(self) -> list[ServiceProcess]:
        return [p for p in self.cluster.processes if p.name == "worker" and p.proc.poll() is None]

    async def set_workers(self, n: int) -> None:
        """Start or stop workers until ``n`` run, then wait until ``n`` take tasks."""
        while len(self.workers()) < n:
            self.cluster.start_worker()
        for extra in self.workers()[n:]:
            await asyncio.to_thread(extra.stop)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until a fan-out lands on all n (rebalance over)
            # Wider than the orchestrator's dispatch_group_max (16): a narrower run goes to
            # ONE partition, so it would "land on all" of one worker before the partitions
            # of a worker just stopped had moved to it.
            run_id = await submit(self.api, fanout_spec(max(12 * n, 64)))
            await wait_runs(self.db, [run_id], timeout=120)
            if len(await worker_ids(self.db, run_id)) == n:
                return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"{n} workers never all took tasks")

    async def measure(
        self, label: str, specs: list[dict[str, Any]], *, metered: bool = True
    ) -> Row:
        """Submit the specs together and wait for their runs; CPU of the whole row."""
        progress(f"{label}: start")
        before, wal_before = self.meter.sample(), await wal_position(self.db)
        runs = [await submit(self.api, spec) for spec in specs]
        await wait_runs(self.db, runs, timeout=1800)
        after, wal_after = self.meter.sample(), await wal_position(self.db)
        row = Row(runs, await task_times(self.db, runs), await runs_finished(self.db, runs))
        if metered:
            self.cpu.add(self.meter.delta(before, after), len(row.times))
            self.wal_bytes += wal_after - wal_before
        progress(f"{label}: {len(row.times)} tasks, {row.rate:.1f} tasks/s")
        return row


@dataclass
class Row:
    runs: list[str]
    times: list[tuple[float, float, float]]
    closed: float
    """When the last run was closed by the engine (epoch seconds)."""

    @property
    def span(self) -> float:
        return span(self.times, self.closed)

    @property
    def rate(self) -> float:
        return len(self.times) / self.span


def phases_ms(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """The orchestrator's batches between two scrapes: their number and, per phase, the
    mean ms per batch (apply + write: the orchestrator's share of dispatch latency)."""
    out: dict[str, float] = {}
    for phase, (total, count) in after.items():
        total_before, count_before = before.get(phase, (0.0, 0.0))
        if count > count_before:
            out["batches"] = count - count_before
            out[phase] = round((total - total_before) / (count - count_before) * 1000, 3)
    return out


async def engine_rows(engine: Engine, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Idle, then chain, fan-out, both, big fan-out (CPU metered), then the latency row."""
    if args.idle:
        await asyncio.sleep(1.0)  # the warm-up's last results, commits and marks settle
        before, started = engine.meter.sample(), time.monotonic()
        await asyncio.sleep(args.idle)
        used = engine.meter.delta(before, engine.meter.sample())
        elapsed = time.monotonic() - started
        out["idle_cpu_pct"] = round(sum(used.values()) / elapsed * 100, 1)
        out["idle_cpu_pct_by"] = {name: round(s / elapsed * 100, 1) for name, s in used.items()}
    # Throughput rows, one after the other.
    phases = await engine.batch_phases()
    chain = await engine.measure("chain", [chain_spec(args.chain)])
    out["chain"] = args.chain
    out["chain_step_ms"] = round(chain.span / len(chain.times) * 1000, 2)
    out["chain_step_parts_ms"] = chain_parts_ms(chain.times)
    out["chain_step_split_ms"] = await chain_split_ms(
        engine.db, chain.runs, engine.ready_topic, engine.result_topic
    )
    out["chain_batch_phases_ms"] = phases_ms(phases, await engine.batch_phases())

    fan = await engine.measure("fan-out", [fanout_spec(args.fanout)])
    out["fanout"] = args.fanout
    out["fanout_tasks_per_s"] = round(fan.rate, 1)
    out["fanout_run_s"] = round(await run_seconds(engine.db, fan.runs[0]), 3)

    both = await engine.measure(
        "chain + fan-out", [chain_spec(args.chain), fanout_spec(args.fanout)]
    )
    out["tasks"] = len(both.times)
    out["tasks_per_s"] = round(both.rate, 1)
    burst = percentiles_ms([s - r for r, s, _ in both.times])
    out["burst_dispatch_p50_ms"] = burst["p50"]
    out["burst_dispatch_p99_ms"] = burst["p99"]

    if args.big_fanout:
        spec = fanout_spec(args.big_fanout)
        big = await engine.measure("big fan-out", [spec])
        out["bigfanout"] = len(big.times)
        out["bigfanout_nodes"] = len(spec["tasks"])
        out["bigfanout_tasks_per_s"] = round(big.rate, 1)
        out["bigfanout_run_s"] = round(await run_seconds(engine.db, big.runs[0]), 3)
        out["bigfanout_parts_ms"] = fanout_parts_ms(big.times, big.closed)

    out["cpu_ms_per_task"] = engine.cpu.total_ms()
    out["cpu_ms_per_task_by"] = engine.cpu.per_task_ms()
    out["cpu_tasks"] = engine.cpu.tasks
    out["wal_kb_per_task"] = round(engine.wal_bytes / 1024 / max(1, engine.cpu.tasks), 2)
    if engine.meter.warnings:
        out["cpu_warnings"] = sorted(set(engine.meter.warnings))

    if args.duration <= 0:  # no offered load (as in the ceiling rows)
        return
    # Dispatch latency at a fixed offered load.
    progress(f"latency at {args.rate} tasks/s offered: start")
    # Open loop: a run of --batch tasks every batch/rate seconds, whether or not earlier
    # submissions have returned (at most 64 in flight: past that the generator falls behind
    # and offered_tasks_per_s says so).
    interval = args.batch / args.rate
    slots = asyncio.Semaphore(64)

    async def one() -> str:
        try:
            return await submit(engine.api, fanout_spec(args.batch))
        finally:
            slots.release()

    submissions: list[asyncio.Task[str]] = []
    profilers = await start_profilers(engine, args.profile, args.duration)
    phases = await engine.batch_phases()
    cpu_before, wal_before = engine.meter.sample(), await wal_position(engine.db)
    started = time.monotonic()
    while (now := time.monotonic()) - started < args.duration:
        await slots.acquire()
        submissions.append(asyncio.create_task(one()))
        due = started + len(submissions) * interval
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    offered = len(submissions) * args.batch / (now - started)
    load_runs = list(await asyncio.gather(*submissions))
    accepted_s = time.monotonic() - started  # the gateway answered the last submission
    if profilers:
        out["profile"] = await finish_profilers(profilers, args.profile)
    await wait_runs(engine.db, load_runs, timeout=600)
    out["load_batch_phases_ms"] = phases_ms(phases, await engine.batch_phases())
    load_cpu = CpuTally()  # per RUN: small runs cost mostly what a run costs, not a task
    load_cpu.add(engine.meter.delta(cpu_before, engine.meter.sample()), len(load_runs))
    load_wal = await wal_position(engine.db) - wal_before
    phase2 = await task_times(engine.db, load_runs)
    load = percentiles_ms([s - r for r, s, _ in phase2])
    out["offered_tasks_per_s"] = round(offered, 1)
    out["offered_for_s"] = round(now - started, 2)
    out["accepted_in_s"] = round(accepted_s, 2)
    out["load_tasks"] = len(phase2)
    out["load_runs"] = len(load_runs)
    out["load_cpu_ms_per_run"] = load_cpu.total_ms()
    out["load_cpu_ms_per_run_by"] = load_cpu.per_task_ms()
    out["load_wal_kb_per_run"] = round(load_wal / 1024 / max(1, len(load_runs)), 2)
    out["dispatch_p50_ms"] = load["p50"]
    out["dispatch_p95_ms"] = load["p95"]
    out["dispatch_p99_ms"] = load["p99"]
    e2e = percentiles_ms(await submit_to_start(engine.db, load_runs))
    out["submit_to_start_p50_ms"], out["submit_to_start_p99_ms"] = e2e["p50"], e2e["p99"]
    split = await dispatch_split(engine.db, load_runs, engine.ready_topic)
    if split:
        commit, hop = (percentiles_ms([part[i] for part in split]) for i in (0, 1))
        out["dispatch_commit_p50_ms"], out["dispatch_commit_p99_ms"] = commit["p50"], commit["p99"]
        out["dispatch_hop_p50_ms"], out["dispatch_hop_p99_ms"] = hop["p50"], hop["p99"]


async def start_profilers(
    engine: Engine, directory: Path | None, duration_s: float
) -> list[tuple[Path, asyncio.subprocess.Process]]:
    """py-spy on every service process for the offered load's duration (none without
    ``--profile``). ``--nonblocking``: the processes are sampled without being paused."""
    if directory is None:
        return []
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--profile needs py-spy (uv sync installs it with the dev group)")
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    started = []
    for process in engine.cluster.processes:
        if process.proc.poll() is not None:
            continue
        path = directory / f"{process.name}-{process.proc.pid}.txt"
        record = await asyncio.create_subprocess_exec(
            py_spy,
            "record",
            "--pid",
            str(process.proc.pid),
            "--duration",
            str(max(1, math.ceil(duration_s))),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        started.append((path, record))
    return started


async def finish_profilers(
    profilers: list[tuple[Path, asyncio.subprocess.Process]], directory: Path
) -> str:
    """Wait for py-spy, then write (and show) the summary; returns the directory."""
    for _, record in profilers:
        await record.wait()
    recorded = [path for path, _ in profilers if path.is_file()]
    summary = await asyncio.to_thread(profile_summary.summarize, recorded)
    await asyncio.to_thread((directory / "summary.txt").write_text, summary)
    progress(f"profile of the offered load in {directory}:\n{summary}")
    return str(directory)


def deployment_defaults() -> dict[str, str]:
    """The settings tests/support/cluster.py shortens or relaxes for the test suite (fewer
    partitions, faster sweeps and heartbeats, quicker failure detection, requests without
    a credential), back at the services' defaults: the bench measures what a deployment
    runs. Its requests carry an API key (``api_key``)."""
    from cadenza_orchestrator import OrchestratorSettings
    from cadenza_worker.settings import WorkerSettings

    def default(settings: Any, name: str) -> str:
        return str(settings.model_fields[name].default)

    return {
        "CADENZA_GATEWAY_AUTH_ANONYMOUS_ACCESS": "false",
        "CADENZA_BUS_PARTITIONS": default(BusSettings, "partitions"),
        "CADENZA_BUS_SESSION_TIMEOUT_MS": default(BusSettings, "session_timeout_ms"),
        "CADENZA_ORCHESTRATOR_SWEEP_INTERVAL_S": default(OrchestratorSettings, "sweep_interval_s"),
        "CADENZA_ORCHESTRATOR_SWEEP_MIN_AGE_S": default(OrchestratorSettings, "sweep_min_age_s"),
        "CADENZA_WORKER_LEASE_TTL_S": default(WorkerSettings, "lease_ttl_s"),
    }


async def api_key(db: AsyncEngine) -> str:
    """An all-scope API key of the default tenant, made in the gateway's database as
    `cadenza keys bootstrap` makes one: every request then pays for its authentication."""
    from cadenza_gateway.auth import ALL_SCOPES, create_key

    async with async_sessionmaker(db)() as session, session.begin():
        issued = await create_key(
            session=session,
            tenant_id="default",
            name="bench",
            scopes=[str(s) for s in ALL_SCOPES],
            created_by="bench",
        )
    return issued.token


async def distributed(args: argparse.Namespace, servers: dict[str, Any]) -> dict[str, Any]:
    namespace = "bench" + uuid.uuid4().hex[:8]
    cluster = Cluster(
        namespace=namespace,
        log_dir=Path(tempfile.mkdtemp(prefix="cadenza-bench-")),
        env_overrides={
            **deployment_defaults(),
            "CADENZA_WORKER_CONCURRENCY": str(args.worker_concurrency),
            **dict(kv.split("=", 1) for kv in args.env),
        },
    )
    STARTED_CLUSTERS.append(cluster)
    db = create_engine(StateSettings(database_schema=namespace))
    out: dict[str, Any] = {}
    try:
        progress(f"engine: starting the services ({namespace})")
        cluster.start_gateway()
        metrics_port = free_port()  # loopback: served without the operators' token
        cluster.start_orchestrator({"CADENZA_ORCHESTRATOR_METRICS_PORT": str(metrics_port)})
        meter = CpuMeter({**cluster_roots(cluster), **servers})
        auth = {"Authorization": f"Bearer {await api_key(db)}"}
        async with httpx.AsyncClient(base_url=cluster.url, timeout=60, headers=auth) as api:
            engine = Engine(
                cluster, api, db, meter, f"{namespace}.task.ready", f"{namespace}.task.result"
            )
            engine.orchestrator_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
            # Workers are started once, all together (importing a worker is slow on a busy
            # machine), then stopped one count after the other: scaling 4, 2, then the
            # main rows at --workers, then 1.
            counts = sorted(set(args.scaling) | {args.workers}, reverse=True)
            scaling: dict[str, float] = {}
            for n in counts:
                await engine.set_workers(n)  # warm-up included
                if n in args.scaling:
                    row = await engine.measure(
                        f"scaling {n} workers", [fanout_spec(args.fanout)], metered=False
                    )
                    scaling[str(n)] = round(row.rate, 1)
                if n == args.workers:
                    await engine_rows(engine, args, out)
            if scaling:
                out["scaling_fanout_tasks_per_s"] = dict(
                    sorted(scaling.items(), key=lambda kv: int(kv[0]))
                )
    except Exception:
        print(cluster.logs(), file=sys.stderr)
        raise
    finally:
        cluster.stop()
        await db.dispose()
        await drop_schema(StateSettings(database_schema=namespace))
        await delete_topics(f"{namespace}.")
        await delete_hot_keys(f"{namespace}:")
    return out


async def delete_hot_keys(prefix: str) -> None:
    """The run's Redis keys (event logs live 7 days): left behind, they pile up, and Redis
    rewriting its append-only file for them burns CPU in later benchmarks' figures."""
    async with prefixed_hot_state("redis", prefix):
        pass


async def delete_topics(prefix: str) -> None:
    try:
        await KafkaBus(BusSettings(topic_prefix=prefix)).delete_topics()
    except Exception as exc:  # clean-up is best effort
        print(f"could not delete topics {prefix}*: {exc}", file=sys.stderr)


# -- the no-state ceiling -------------------------------------------------------------------


async def ceiling(args: argparse.Namespace, servers: dict[str, Any], impl: str) -> dict[str, Any]:
    """The chain and the fan-outs through bench/dispatch_ceiling.py's processes; ``impl``
    ``bus`` = cadenza_events' KafkaBus and codec, ``raw`` = bare aiokafka."""
    prefix = "benchceil" + uuid.uuid4().hex[:8] + "."
    row = "ceiling" if impl == "bus" else "ceiling_raw"
    script = str(Path(__file__).with_name("dispatch_ceiling.py"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_BUS_")}
    await KafkaBus(BusSettings(topic_prefix=prefix, partitions=6)).ensure_topics()
    procs: list[asyncio.subprocess.Process] = []
    out: dict[str, Any] = {}
    try:
        for _ in range(args.workers):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    script,
                    "worker",
                    "--prefix",
                    prefix,
                    "--concurrency",
                    str(args.worker_concurrency),
                    "--impl",
                    impl,
                    env=env,
                )
            )
        orch = await asyncio.create_subprocess_exec(
            sys.executable,
            script,
            "orchestrator",
            "--prefix",
            prefix,
            "--impl",
            impl,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        procs.append(orch)
        STARTED_PIDS.extend(p.pid for p in procs)
        meter = CpuMeter({row: lambda: [p.pid for p in procs], **servers})
        tally = CpuTally()

        async def ask(command: str, n: int | str, *, metered: bool = True) -> dict[str, Any]:
            assert orch.stdin is not None
            assert orch.stdout is not None
            before = meter.sample()
            orch.stdin.write(f"{command} {n}\n".encode())
            await orch.stdin.drain()
            line = await asyncio.wait_for(orch.stdout.readline(), timeout=600)
            if not line:
                raise RuntimeError("the ceiling orchestrator exited")
            if metered:
                tally.add(meter.delta(before, meter.sample()), n)
            answer: dict[str, Any] = json.loads(line)
            return answer

        # Warm-up until a fan-out lands on every worker (the group's rebalance is over).
        progress(f"{row}: warming up")
        deadline = time.monotonic() + 120
        while (await ask("fanout", 12 * args.workers, metered=False))["workers"] < args.workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{row}: {args.workers} workers never all took tasks")
            await asyncio.sleep(0.5)
        progress(f"{row}: measuring")

        chain = await ask("chain", args.chain)
        out[f"{row}_chain_step_ms"] = round(chain["seconds"] / args.chain * 1000, 2)
        fan = await ask("fanout", args.fanout)
        out[f"{row}_fanout_tasks_per_s"] = round(args.fanout / fan["seconds"], 1)
        # The median of three (one run of it swings up to 2x, a stall of the fan-out's), not
        # metered: the ceiling's CPU per task stays that of its chain and fan-outs.
        rates = []
        for _ in range(3):
            both = await ask("combined", f"{args.chain} {args.fanout}", metered=False)
            rates.append(both["tasks"] / both["seconds"])
        out[f"{row}_tasks_per_s"] = round(statistics.median(rates), 1)
        if args.big_fanout:
            big = await ask("fanout", args.big_fanout)
            out[f"{row}_bigfanout_tasks_per_s"] = round(args.big_fanout / big["seconds"], 1)
        if impl == "bus" and args.duration > 0:
            # The engine's offered load with no state: the floor of its dispatch latency.
            progress(f"{row}: latency at {args.rate} tasks/s offered")
            load = await ask("load", f"{args.rate} {args.duration} {args.batch}", metered=False)
            out[f"{row}_dispatch_p50_ms"] = load["dispatch_p50_ms"]
            out[f"{row}_dispatch_p99_ms"] = load["dispatch_p99_ms"]
        out[f"{row}_cpu_ms_per_task"] = tally.total_ms()
        out[f"{row}_cpu_ms_per_task_by"] = tally.per_task_ms()
        if meter.warnings:
            out[f"{row}_cpu_warnings"] = sorted(set(meter.warnings))
        assert orch.stdin is not None
        orch.stdin.write(b"quit\n")
        await orch.stdin.drain()
        await asyncio.wait_for(orch.wait(), timeout=30)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), timeout=15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await delete_topics(prefix)
    return out


# -- planning, in process -------------------------------------------------------------------


async def engine_plan(resources: Any, spec: dict[str, Any]) -> tuple[str, float]:
    """THE one place that calls orchestrator internals: insert a pending run the way the
    gateway does, hand its plan.requested to the orchestrator's consumer entry point, and
    return (run id, seconds from handling start to return — the plan's commit, plus the
    after-commit hot-status write on in-memory Redis)."""
    from cadenza_events import Envelope
    from cadenza_orchestrator import Orchestrator, OrchestratorSettings
    from cadenza_runtime import plan_requested
    from cadenza_state import RunRecord

    run_id = str(uuid.uuid4())
    async with resources.sessions() as session, session.begin():
        session.add(
            RunRecord(
                id=run_id,
                tenant_id="bench",
                workflow_name=spec["name"],
                spec=spec,
                inputs={},
                status="pending",
            )
        )
    postgres = resources.state.engine.dialect.name == "postgresql"
    plan = plan_requested(
        run_id=run_id,
        workflow_name=spec["name"],
        workflow_version=None,
        spec=spec,
        inputs={},
        budget=None,
        replay=None,
        row_version=0 if postgres else None,  # as the gateway's: the row travels with it
    )
    env = Envelope(payload=plan, source="/bench/gateway", tenant_id="bench", plan_id=run_id)
    orchestrator = Orchestrator(resources, OrchestratorSettings())
    started = time.perf_counter()
    await orchestrator.handlers.handle(env)
    return run_id, time.perf_counter() - started


def spec_task_cap() -> int | None:
    """How many spec tasks the engine's spec validator accepts (None: no known cap)."""
    try:
        from cadenza_workflow.spec import MAX_TASKS
    except ImportError:
        return None
    return int(MAX_TASKS)


async def planning(sizes: list[int]) -> dict[str, Any]:
    from cadenza_runtime import open_resources, tune_gc

    schema = "benchplan" + uuid.uuid4().hex[:8]
    state = StateSettings(
        database_schema=schema,
        redis_backend="memory",
        object_store="local",
        object_store_dir=Path(tempfile.mkdtemp(prefix="cadenza-bench-plan-")),
    )
    bus = BusSettings(backend="memory", topic_prefix=f"{schema}.")
    resources = await open_resources(bus, state, start_relay=False)
    out: dict[str, Any] = {}
    cap = spec_task_cap()
    dag_sizes = set(sizes)
    if cap and max(sizes) > cap:  # the engine caps spec tasks: measure below the cap too
        dag_sizes |= {cap // 10, cap}
    dag_sizes = {n for n in dag_sizes if n > 0}
    try:
        warm_spec, _ = layered_spec(min(200, *sizes))
        await engine_plan(resources, warm_spec)  # imports, caches, connection pool
        tune_gc()  # as every service does once started (cadenza_runtime.run_until_signal)
        shapes: list[tuple[str, int]] = [("dag", n) for n in sorted(dag_sizes)]
        shapes += [("fanout", n) for n in sorted(sizes)]
        for kind, n in shapes:
            edges = 0
            if kind == "dag":
                spec, edges = layered_spec(n)
            else:
                spec = fanout_spec(n)
            run_id, seconds = await engine_plan(resources, spec)
            progress(f"planned {kind} of {n}: {seconds * 1000:.0f} ms")
            async with resources.sessions() as session:
                rows, status, error = (
                    await session.execute(
                        text(
                            "SELECT (SELECT count(*) FROM tasks WHERE run_id = :id), "
                            "status, error FROM runs WHERE id = :id"
                        ),
                        {"id": run_id},
                    )
                ).one()
            name = f"plan_{kind}_{n}"
            if status != "running" or rows < n:
                # e.g. more spec tasks than the engine accepts: say so, keep going
                reason = (error or {}).get("message") or f"{rows} task rows"
                out[name] = f"run {status}: {str(reason).split(' (got ')[0][:160]}"
                continue
            out[f"{name}_ms"] = round(seconds * 1000, 1)
            out[f"{name}_us_per_task_edge"] = round(seconds * 1e6 / (n + edges), 1)
            if kind == "dag":
                out[f"{name}_edges"] = edges
            else:
                out[f"{name}_nodes"] = len(spec["tasks"])
    finally:
        await resources.close()
        await drop_schema(StateSettings(database_schema=schema))
    return out


# -- the in-process baseline ----------------------------------------------------------------


async def in_process(args: argparse.Namespace) -> float:
    """The same combined workload on `cadenza dev`'s stack, in this process."""
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


# -- main -----------------------------------------------------------------------------------

QUICK = {
    "chain": 20,
    "fanout": 150,
    "big_fanout": 300,
    "rate": 100.0,
    "batch": 5,
    "duration": 3.0,
    "scaling": "1,2,4",
    "plan_sizes": "1000,10000",
    "idle": 2.0,
}


def ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v.strip() and int(v)]


REDIS_KEYS_WARNING = 200_000


def redis_info() -> dict[str, int]:
    """Redis' key count and fork count (snapshots, AOF rewrites): a big dataset makes every
    fork long, and a fork's CPU lands in the Redis row (through ``cutime``) and takes a core
    from the engine while it runs. Empty when Redis does not answer."""
    import redis

    try:
        with redis.Redis(port=SERVER_PORTS["redis"], socket_timeout=5) as client:
            stats = client.info("stats")
            return {"keys": int(client.dbsize()), "forks": int(stats["total_forks"])}
    except (redis.RedisError, OSError, KeyError):
        return {}


def process_uptime_s(pid: int) -> float | None:
    """Seconds since ``pid`` started (/proc), None if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        since_boot = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return since_boot - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime


YOUNG_BROKER_S = 600.0


def broker_uptime() -> float | None:
    """Seconds since the Kafka broker started; warns when it is young: its first minutes
    of the engine's traffic cost it far more CPU than later ones (docs/benchmarks.md,
    twenty-second session), so a first run after `cadenza infra up` reads slow."""
    pid = listening_pid(SERVER_PORTS["kafka"])
    uptime = None if pid is None else process_uptime_s(pid)
    if uptime is not None and uptime < YOUNG_BROKER_S:
        print(
            f"warning: the Kafka broker started {uptime:.0f} s ago: a new broker's first "
            "minutes under load cost it 2-3x the CPU per task (0.38 against 0.13 ms "
            "measured), and every engine row reads slower; run the bench again for figures "
            "to compare",
            file=sys.stderr,
        )
    return uptime


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    servers = server_roots()
    uptime = broker_uptime()
    before = redis_info()
    if before.get("keys", 0) > REDIS_KEYS_WARNING:
        print(
            f"warning: Redis holds {before['keys']:,} keys before the bench: its snapshots "
            "and AOF rewrites fork a large dataset during the rows (CPU in the Redis row, a "
            "core taken from the engine); see docs/benchmarks.md, eighth session",
            file=sys.stderr,
        )
    result = await distributed(args, servers)
    result["worker_concurrency"] = args.worker_concurrency
    result["broker_uptime_s"] = None if uptime is None else round(uptime)
    after = redis_info()
    if before and after:
        result["redis_keys_before"] = before["keys"]
        result["redis_forks_during"] = after["forks"] - before["forks"]
    for impl in args.ceiling:
        row = "ceiling" if impl == "bus" else "ceiling_raw"
        result.update(await ceiling(args, servers, impl))
        # engine / ceiling: < 1 for rates (the engine is slower), > 1 for step times
        result[f"ratio_fanout_vs_{row}"] = round(
            result["fanout_tasks_per_s"] / result[f"{row}_fanout_tasks_per_s"], 3
        )
        result[f"ratio_tasks_per_s_vs_{row}"] = round(
            result["tasks_per_s"] / result[f"{row}_tasks_per_s"], 3
        )
        result[f"ratio_chain_step_vs_{row}"] = round(
            result["chain_step_ms"] / result[f"{row}_chain_step_ms"], 2
        )
        if args.big_fanout:
            result[f"ratio_bigfanout_vs_{row}"] = round(
                result["bigfanout_tasks_per_s"] / result[f"{row}_bigfanout_tasks_per_s"], 3
            )
        if f"{row}_dispatch_p50_ms" in result and "dispatch_p50_ms" in result:
            result[f"ratio_dispatch_p50_vs_{row}"] = round(
                result["dispatch_p50_ms"] / result[f"{row}_dispatch_p50_ms"], 2
            )
    if args.plan_sizes:
        progress("planning")
        result.update(await planning(args.plan_sizes))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"small sizes: {QUICK}")
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--fanout", type=int, default=500)
    parser.add_argument("--big-fanout", type=int, default=5000, help="0 disables")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=None,
        help="tasks per worker at once, engine and ceiling (default: the workers' own)",
    )
    parser.add_argument("--rate", type=float, default=500.0, help="offered load, tasks/s")
    parser.add_argument("--batch", type=int, default=10, help="parallel tasks per load run")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds of offered load (0: no load row)"
    )
    parser.add_argument("--scaling", default="1,2,4", help="worker counts; '' disables")
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds of the idle CPU row; 0 disables"
    )
    parser.add_argument(
        "--plan-sizes", default="1000,10000", help="tasks of the planned DAGs; '' disables"
    )
    parser.add_argument(
        "--ceiling",
        default="bus,raw",
        help="no-state ceilings: bus (cadenza_events.KafkaBus), raw (aiokafka); '' disables",
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy every service process through the offered load; stacks and a summary "
        "go to DIR",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for every engine service (repeatable), e.g. CADENZA_BUS_LINGER_MS=5",
    )
    args = parser.parse_args()
    if args.quick:
        defaults = {a.dest: a.default for a in parser._actions}
        for name, value in QUICK.items():
            if getattr(args, name) == defaults[name]:  # explicit flags still win
                setattr(args, name, value)
        args.no_baseline = True
    if args.worker_concurrency is None:  # measure what a worker does out of the box
        from cadenza_worker.settings import WorkerSettings

        args.worker_concurrency = WorkerSettings.model_fields["concurrency"].default
    args.scaling = ints(args.scaling)
    args.plan_sizes = ints(args.plan_sizes)
    args.ceiling = [c for c in args.ceiling.split(",") if c.strip()]
    if not set(args.ceiling) <= {"bus", "raw"}:
        parser.error("--ceiling takes bus, raw or both")
    started = time.monotonic()
    try:
        result = asyncio.run(run_all(args))
        if not args.no_baseline:
            baseline = asyncio.run(in_process(args))
            result["inprocess_tasks_per_s"] = round(baseline, 1)
            result["ratio_vs_inprocess"] = round(result["tasks_per_s"] / baseline, 2)
    finally:  # interrupted or failed: leave no service running on the shared machine
        for cluster in STARTED_CLUSTERS:
            cluster.stop()
        for pid in STARTED_PIDS:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
    result["bench_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

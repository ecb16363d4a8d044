"""Workloads and exactly-once checks shared by the fault drills (tests/faults).

Workloads: a fan-out of no-op tasks (``fan_out``), a fan-out of journaled side effects
(``effect_fan_out``) and a chain of sleeps and journaled side effects (``effect_chain``).
Side effects use the ``flaky`` tool with ``failures: 0``: its Redis counter, keyed per run
and task, counts REAL executions (output ``{"calls": n}``), while the effect journal
(``tool_effects``) must hold exactly one record per task.

Checks read the deployment's schema directly: every task succeeded, ``task_attempts`` has
exactly one row per dispatch (``tasks.attempt``), each side effect ran and was recorded
once. Re-dispatches (attempt rows with status ``lost``) are returned with their reasons,
so a drill can forbid them or report them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cadenza_events import BusSettings
from cadenza_events.kafka import KafkaBus
from cadenza_state import StateSettings, create_engine
from cadenza_state.models import TERMINAL_RUN_STATUSES
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from support import assert_eventually
from support.cleanup import drop_schema
from support.cluster import Cluster

TERMINAL = {"succeeded", "failed", "cancelled"}


def tool(task_id: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "kind": "tool", "tool": name, **fields}


def fan_out(name: str, width: int, tool_name: str = "noop") -> dict[str, Any]:
    """items → ``width`` x noop → a fan-in counting them (output: ``width``)."""
    return {
        "name": name,
        "tasks": [
            tool("items", "transform", **{"with": {"list": f"${{{{ list(range({width})) }}}}"}}),
            tool("fan", tool_name, needs=["items"], for_each="tasks.items.output.list"),
            tool(
                "fan_in",
                "transform",
                needs=["fan"],
                **{"with": {"n": "${{ len(tasks.fan.output) }}"}},
            ),
        ],
    }


def effect_fan_out(name: str, width: int) -> dict[str, Any]:
    """items → ``width`` x flaky (one journaled side effect each) → a fan-in summing the
    executions (output: ``width`` when every effect ran once)."""
    return {
        "name": name,
        "tasks": [
            tool("items", "transform", **{"with": {"list": f"${{{{ list(range({width})) }}}}"}}),
            tool(
                "fx",
                "flaky",
                needs=["items"],
                for_each="tasks.items.output.list",
                **{"with": {"failures": 0, "key": "${{ run.id }}-${{ item }}"}},
            ),
            tool(
                "fan_in",
                "transform",
                needs=["fx"],
                **{"with": {"calls": "${{ sum([o.calls for o in tasks.fx.output]) }}"}},
            ),
        ],
        "output": "${{ tasks.fan_in.output.calls }}",
    }


def effect_chain(name: str, pairs: int, seconds: float) -> dict[str, Any]:
    """sleep → side effect → sleep → side effect …: ``2 x pairs`` tasks in one line;
    ``fx*`` tasks call the journaled ``flaky`` tool."""
    tasks: list[dict[str, Any]] = []
    previous: list[str] = []
    for i in range(pairs):
        tasks.append(tool(f"s{i}", "sleep", needs=previous, **{"with": {"seconds": seconds}}))
        tasks.append(
            tool(
                f"fx{i}",
                "flaky",
                needs=[f"s{i}"],
                **{"with": {"failures": 0, "key": f"${{{{ run.id }}}}-{i}"}},
            )
        )
        previous = [f"fx{i}"]
    return {"name": name, "tasks": tasks}


async def start_run(
    api: httpx.AsyncClient, spec: dict[str, Any], inputs: dict[str, Any] | None = None
) -> str:
    resp = await api.post("/v1/runs", json={"spec": spec, "inputs": inputs or {}})
    assert resp.status_code == 201, resp.text
    run_id: str = resp.json()["id"]
    return run_id


async def finished(api: httpx.AsyncClient, run_id: str, timeout: float = 60) -> dict[str, Any]:
    async def poll() -> dict[str, Any] | None:
        resp = await api.get(f"/v1/runs/{run_id}")
        assert resp.status_code == 200, f"GET run {run_id}: {resp.status_code} {resp.text[:300]}"
        run: dict[str, Any] = resp.json()
        return run if run["status"] in TERMINAL else None

    result: dict[str, Any] = await assert_eventually(
        poll, timeout=timeout, interval=0.25, message=f"run {run_id} never finished"
    )
    return result


@dataclass(frozen=True)
class TaskFacts:
    status: str
    attempt: int
    effects: int
    """Rows in ``tool_effects`` (the journal)."""
    results: int
    """Rows in ``task_attempts`` (one per dispatch that ended, ``lost`` included)."""


async def task_facts(db: AsyncEngine, run_id: str) -> dict[str, TaskFacts]:
    """node[index] → facts, for every task row of the run."""
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                """
                SELECT t.node_id, t.item_index, t.status, t.attempt,
                       (SELECT count(*) FROM tool_effects e WHERE e.task_id = t.id),
                       (SELECT count(*) FROM task_attempts a WHERE a.task_id = t.id)
                FROM tasks t WHERE t.run_id = :run
                """
            ),
            {"run": run_id},
        )
        return {
            f"{node}[{index}]" if index is not None else node: TaskFacts(
                status, attempt, int(fx), int(results)
            )
            for node, index, status, attempt, fx, results in rows
        }


async def redispatches(db: AsyncEngine, run_ids: list[str]) -> list[str]:
    """One line per attempt the sweeper declared lost: task, attempt and its reason."""
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                """
                SELECT t.run_id, t.node_id, t.item_index, a.attempt, a.error
                FROM task_attempts a JOIN tasks t ON t.id = a.task_id
                WHERE t.run_id = ANY(:runs) AND (a.status = 'lost' OR a.attempt > 1)
                ORDER BY t.run_id, t.node_id, t.item_index, a.attempt
                """
            ),
            {"runs": run_ids},
        )
        return [
            f"{run} {node}[{index}] attempt {attempt}: {(error or {}).get('message')}"
            for run, node, index, attempt, error in rows
        ]


def assert_exactly_once(
    run: dict[str, Any], facts: dict[str, TaskFacts], *, effect_store_down: bool = False
) -> None:
    """Every task succeeded with exactly one recorded result per dispatch; every ``fx*``
    task (journaled side effect) recorded its effect once and really executed once.

    ``effect_store_down``: the drill took away a store an ``fx`` call depends on: PostgreSQL,
    where the journal lives, or Redis, where the ``flaky`` tool's effect (a counter) lives.
    The tool is idempotent, journaled AFTER its call (docs/execution.md): a call whose
    record could not be written, or whose reply was lost after Redis applied it, is made
    again when the attempt resumes, so it may have executed more than once — still
    recorded once, its task still applied once. (A call that is not idempotent is journaled
    ``sent`` before it is made, and held in doubt instead.)"""
    assert run["status"] == "succeeded", f"run {run['id']} {run['status']}: {run.get('error')}"
    groups = {name.split("[")[0] for name in facts if "[" in name}
    problems = []
    for name, f in sorted(facts.items()):
        if f.status != "succeeded":
            problems.append(f"{name}: {f.status}")
        if name in groups:
            continue  # a fan-out's group row has no attempts of its own
        if f.results != f.attempt:
            problems.append(f"{name}: {f.results} recorded results for {f.attempt} dispatch(es)")
        expected = 1 if name.startswith("fx") else 0
        if f.effects != expected:
            problems.append(f"{name}: {f.effects} journaled effects, expected {expected}")
    for task in run["tasks"]:
        fan_group = task["node_id"] in groups and task["item_index"] is None
        if not task["node_id"].startswith("fx") or fan_group:
            continue
        calls = (task["output"] or {}).get("calls", 0)
        if calls != 1 and not (effect_store_down and calls > 1):
            problems.append(f"{task['node_id']}[{task['item_index']}] executed {task['output']}")
    assert not problems, f"run {run['id']}: " + "; ".join(problems[:20])


async def finished_runs(db: AsyncEngine, run_ids: list[str]) -> list[str]:
    """Those of ``run_ids`` in a terminal status now."""
    async with db.connect() as conn:
        rows = await conn.execute(
            text("SELECT id FROM runs WHERE id = ANY(:ids) AND status = ANY(:done)"),
            {"ids": run_ids, "done": [s.value for s in TERMINAL_RUN_STATUSES]},
        )
        return [row[0] for row in rows]


async def succeeded_count(db: AsyncEngine, run_id: str) -> int:
    """Tasks of the run that succeeded so far."""
    async with db.connect() as conn:
        value = await conn.scalar(
            text("SELECT count(*) FROM tasks WHERE run_id = :run AND status = 'succeeded'"),
            {"run": run_id},
        )
        return int(value or 0)


async def outbox_left(db: AsyncEngine) -> int:
    """Outbox rows not yet published: a published row is deleted, so once every run has
    finished and the writers' background deletes ran, none may be left (a row left would
    be an event the engine committed and never sent)."""
    async with db.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM outbox")) or 0)


@dataclass
class Probe:
    """What the gateway answered while a backing store was down."""

    method: str
    path: str
    status: int
    retry_after: str | None
    problem_type: str | None
    at_s: float
    run_id: str | None = None
    """The run a POST created (201)."""

    def __str__(self) -> str:
        return f"{self.method} {self.path} → {self.status} (Retry-After {self.retry_after})"


async def probe_while_down(
    api: httpx.AsyncClient,
    seconds: float,
    requests: list[tuple[str, str, dict[str, Any] | None]],
    interval_s: float = 0.5,
) -> list[Probe]:
    """Send ``requests`` (method, path, json body) round after round for ``seconds`` (the
    timed outage window) and record every answer."""
    probes: list[Probe] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        for method, path, body in requests:
            try:
                resp = await api.request(method, path, json=body, timeout=5)
            except httpx.HTTPError as exc:  # the gateway itself must stay up
                raise AssertionError(f"{method} {path}: no answer ({exc!r})") from exc
            problem = run_id = None
            if resp.headers.get("content-type", "").startswith("application/problem+json"):
                problem = resp.json().get("type")
            elif method == "POST" and resp.status_code == 201:
                run_id = resp.json()["id"]
            probes.append(
                Probe(
                    method,
                    path,
                    resp.status_code,
                    resp.headers.get("retry-after"),
                    problem,
                    time.monotonic() - started,
                    run_id,
                )
            )
        await asyncio.sleep(interval_s)
    return probes


def settings_of(cluster: Cluster) -> tuple[StateSettings, BusSettings]:
    """The state and bus settings the cluster's services use (private instances included)."""
    env = cluster.env_overrides
    state: dict[str, Any] = {
        "database_schema": cluster.namespace,
        "redis_key_prefix": f"{cluster.namespace}:",
    }
    if "CADENZA_DATABASE_URL" in env:
        state["database_url"] = env["CADENZA_DATABASE_URL"]
    if "CADENZA_REDIS_URL" in env:
        state["redis_url"] = env["CADENZA_REDIS_URL"]
    bus: dict[str, Any] = {"topic_prefix": f"{cluster.namespace}."}
    if "CADENZA_BUS_BOOTSTRAP_SERVERS" in env:
        bus["bootstrap_servers"] = env["CADENZA_BUS_BOOTSTRAP_SERVERS"]
    return StateSettings(**state), BusSettings(**bus)


@asynccontextmanager
async def deployment(
    namespace: str,
    log_dir: Path,
    overrides: dict[str, str] | None = None,
    *,
    orchestrators: int = 1,
    workers: int = 1,
    orchestrator_env: Callable[[int], dict[str, str]] | None = None,
) -> AsyncIterator[tuple[Cluster, httpx.AsyncClient, AsyncEngine]]:
    """Gateway + orchestrators + workers as OS processes; yields the cluster, an API client
    and an engine on its schema. Afterwards every process is stopped and the schema, topics
    and Redis keys it used are removed (private instances are removed by their fixture)."""
    cluster = Cluster(namespace=namespace, log_dir=log_dir, env_overrides=dict(overrides or {}))
    state, bus = settings_of(cluster)
    db = create_engine(state)
    try:
        cluster.start_gateway()  # first: it migrates the fresh schema
        for i in range(orchestrators):
            cluster.start_orchestrator(orchestrator_env(i) if orchestrator_env else None)
        for _ in range(workers):
            cluster.start_worker()
        async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as api:
            # Warm up: the services start slowly on a busy machine and the consumer groups
            # must settle before a drill's clock starts.
            warm = await finished(api, await start_run(api, fan_out("warm-up", 4)), timeout=120)
            assert warm["status"] == "succeeded", warm
            yield cluster, api, db
    finally:
        for service in cluster.processes:  # all at once: each then has its full grace period
            if service.proc.poll() is None:
                service.proc.terminate()
        cluster.stop()
        print(cluster.logs())
        await db.dispose()
        await _clean(state, bus)


async def _clean(state: StateSettings, bus: BusSettings) -> None:
    try:
        await drop_schema(state)
    except Exception as exc:  # a private instance may already be gone
        print(f"could not drop schema {state.database_schema}: {exc!r}")
    try:
        await KafkaBus(bus).delete_topics()
    except Exception as exc:
        print(f"could not delete topics {bus.topic_prefix}*: {exc!r}")
    try:
        import redis.asyncio as redis

        client = redis.Redis.from_url(state.redis_url)
        try:
            doomed = [
                k async for k in client.scan_iter(match=f"{state.redis_key_prefix}*", count=10_000)
            ]
            if doomed:
                await client.delete(*doomed)
        finally:
            await client.aclose()
    except Exception as exc:
        print(f"could not delete redis keys {state.redis_key_prefix}*: {exc!r}")


async def attempts_above_one(db: AsyncEngine, run_ids: list[str]) -> list[str]:
    """Tasks dispatched more than once (``tasks.attempt`` > 1)."""
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT run_id, node_id, item_index, attempt FROM tasks "
                "WHERE run_id = ANY(:runs) AND attempt > 1 ORDER BY run_id, node_id, item_index"
            ),
            {"runs": run_ids},
        )
        return [f"{run} {node}[{index}] attempt {attempt}" for run, node, index, attempt in rows]


async def _scrape(url: str, metric: str) -> list[Any]:
    """The samples of ``metric`` (a counter) at a /metrics endpoint, from ONE request."""
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient(timeout=5) as client:
        body = (await client.get(url)).text
    return [
        sample
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name in (metric, f"{metric}_total")
    ]


async def scrape_total(url: str, metric: str, **labels: str) -> float:
    """Sum of the samples of ``metric`` (a counter) at a /metrics endpoint: every label's,
    or only those with ``labels``."""
    return sum(
        sample.value
        for sample in await _scrape(url, metric)
        if all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def scrape_by(url: str, metric: str, label: str, values: Sequence[str]) -> dict[str, float]:
    """``scrape_total`` of each of ``values`` of ``label``, all from ONE scrape: counters
    that move together (one call increments both) are read at one moment."""
    samples = await _scrape(url, metric)
    return {v: sum(s.value for s in samples if s.labels.get(label) == v) for v in values}

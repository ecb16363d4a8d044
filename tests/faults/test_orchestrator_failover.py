"""Two orchestrator processes share the partitions of plan.requested and task.result; one
is killed with SIGKILL in the middle of a 500-wide fan-out of journaled side effects (and
five short chains, so both own runs). The survivor takes the partitions over: every run
finishes, no task is lost, none is dispatched or executed twice; and it reads the runs it
took over whole once (the rebuild), not on every batch. And the same with no peer: the only
orchestrator killed, and a fresh one started."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from cadenza_orchestrator.graph import task_id_for
from cadenza_runtime import keys
from sqlalchemy import text
from support import assert_eventually
from support.cluster import free_port
from support.drills import (
    assert_exactly_once,
    attempts_above_one,
    deployment,
    effect_chain,
    effect_fan_out,
    finished,
    finished_runs,
    redispatches,
    scrape_by,
    scrape_total,
    settings_of,
    start_run,
    succeeded_count,
    task_facts,
)

pytestmark = pytest.mark.timeout(240)

WIDTH = 500
# Task rows each orchestrator moved to a terminal status (it applied their results).
APPLIED = "cadenza_orchestrator_tasks_finished_total"
# Runs of batches applied without a lock, by outcome (hit, rebuilt, miss).
MEMORY = "cadenza_orchestrator_run_memory_total"
# Runs held at a rebalance, by outcome (kept, forgotten).
REBALANCED = "cadenza_orchestrator_run_memory_rebalanced_total"
OUTCOMES = ("kept", "forgotten")


async def fan_out_in_flight(api: Any, db: Any, chains: int) -> tuple[str, list[str]]:
    """A 500-wide fan-out of journaled effects and short chains, returned once the fan-out
    is under way (50 effects done, not all): (the fan-out's run, every run)."""
    big = await start_run(api, effect_fan_out("big", WIDTH))
    runs = [big, *[await start_run(api, effect_chain(f"chain{i}", 3, 0.3)) for i in range(chains)]]

    async def mid_run() -> bool:
        done = await succeeded_count(db, big)
        assert done < WIDTH, "the fan-out finished before the kill: too fast"
        return done >= 50

    await assert_eventually(mid_run, timeout=90, interval=0.05)
    return big, runs


def metrics_env() -> tuple[str, dict[str, str]]:
    """A /metrics port for the only orchestrator, which the one started after the kill
    takes over: its URL, and the environment that sets it."""
    port = free_port()
    return f"http://127.0.0.1:{port}/metrics", {"CADENZA_ORCHESTRATOR_METRICS_PORT": str(port)}


async def assert_every_run_once(api: Any, db: Any, big: str, runs: list[str]) -> None:
    """Every run finished, each effect once (the fan-in counts WIDTH calls), and no task
    dispatched again or twice."""
    await assert_each_run_once(api, db, runs)
    big_run = await finished(api, big)
    assert big_run["status"] == "succeeded"
    fan_in = next(t for t in big_run["tasks"] if t["node_id"] == "fan_in")
    assert fan_in["output"] == {"calls": WIDTH}


async def assert_each_run_once(api: Any, db: Any, runs: list[str]) -> None:
    """Every run finished, each effect once, and no task dispatched again or twice."""
    for run_id in runs:
        run = await finished(api, run_id, timeout=120)
        assert_exactly_once(run, await task_facts(db, run_id))
    assert await redispatches(db, runs) == []
    assert await attempts_above_one(db, runs) == []


async def test_kill_9_one_of_two_orchestrators_mid_fan_out(
    unique_id: str, tmp_path: Path, require_services: Callable[..., None]
) -> None:
    require_services("kafka", "postgres", "redis", "minio")
    ports = [free_port(), free_port()]
    metrics = [f"http://127.0.0.1:{port}/metrics" for port in ports]
    async with deployment(
        unique_id,
        tmp_path,
        orchestrators=2,
        workers=2,
        orchestrator_env=lambda i: {"CADENZA_ORCHESTRATOR_METRICS_PORT": str(ports[i])},
    ) as (cluster, api, db):
        big, runs = await fan_out_in_flight(api, db, chains=5)
        orchestrators = [p for p in cluster.processes if p.name == "orchestrator"]
        applied = [await scrape_total(url, APPLIED) for url in metrics]
        rebuilt = [await scrape_total(url, MEMORY, outcome="rebuilt") for url in metrics]
        forgotten = [await scrape_total(url, REBALANCED, outcome="forgotten") for url in metrics]
        # Kill the one that applied more results: it owns the runs in flight right now.
        victim = max(range(2), key=lambda i: applied[i])
        survivor = 1 - victim
        orchestrators[victim].kill()
        print(f"applied before the kill {applied}; killed orchestrator {victim}")

        # Nothing was dispatched twice: the survivor took over, the sweeper had no reason.
        await assert_every_run_once(api, db, big, runs)
        after = await scrape_total(metrics[survivor], APPLIED)
        assert after > applied[survivor], "the survivor applied nothing after the kill"
        print(f"survivor applied {after - applied[survivor]:.0f} task results after the kill")
        # It read the runs it took over whole once, and held them from then on; its own
        # partitions came straight back, so it forgot none of the runs it held.
        now_rebuilt = await scrape_total(metrics[survivor], MEMORY, outcome="rebuilt")
        hits = await scrape_total(metrics[survivor], MEMORY, outcome="hit")
        kept = await scrape_total(metrics[survivor], REBALANCED, outcome="kept")
        print(
            f"survivor rebuilt {now_rebuilt - rebuilt[survivor]:.0f} run(s); {hits:.0f} hits; "
            f"kept {kept:.0f} run(s) held across its rebalances"
        )
        assert now_rebuilt > rebuilt[survivor], "the survivor held none of the runs it took over"
        assert (
            await scrape_total(metrics[survivor], REBALANCED, outcome="forgotten")
            == forgotten[survivor]
        ), "the survivor forgot runs of partitions it kept"


async def test_kill_9_the_only_orchestrator_mid_fan_out_and_start_another(
    unique_id: str, tmp_path: Path, require_services: Callable[..., None]
) -> None:
    """No peer to take over: the only orchestrator dies mid fan-out, results pile up in
    Kafka, and a fresh process starts. It reads each run in flight whole on its first
    results batch (the rebuild: nothing of them was in its memory) and finishes every run
    with each effect once and nothing dispatched twice."""
    require_services("kafka", "postgres", "redis", "minio")
    url, env = metrics_env()
    async with deployment(unique_id, tmp_path, workers=2, orchestrator_env=lambda _: env) as (
        cluster,
        api,
        db,
    ):
        big, runs = await fan_out_in_flight(api, db, chains=3)
        (first,) = [p for p in cluster.processes if p.name == "orchestrator"]
        first.kill()
        cluster.start_orchestrator(env)

        await assert_every_run_once(api, db, big, runs)
        rebuilt = await scrape_total(url, MEMORY, outcome="rebuilt")
        hits = await scrape_total(url, MEMORY, outcome="hit")
        print(f"the new orchestrator rebuilt {rebuilt:.0f} run(s); {hits:.0f} hits")
        assert rebuilt >= 1, "the new orchestrator held none of the runs in flight"


FAST_CHAINS = 4
FAST_PAIRS = 40  # 80 no-wait steps each: a step is a few milliseconds


async def test_kill_9_an_orchestrator_whose_commits_hang_after_early_dispatch(
    unique_id: str, tmp_path: Path, require_services: Callable[..., None]
) -> None:
    """Early dispatch under a crash, made certain: chains of steps that do not wait; the
    table every results batch's statement writes is locked, so each chain's next batch
    sends its task.ready (early dispatch) and hangs before its commit. The workers run
    those tasks (a journaled effect waits for its dispatch's commit: only the no-wait
    sleeps finish), then the only orchestrator is killed, its hung statements are cut off, and a
    fresh one starts. It applies those batches again and dispatches the same attempts; the
    results of the tasks that already ran come in the same fetch as the results that
    dispatch them, and are applied behind them, not dropped as unknown. Every chain
    finishes, each effect once, nothing dispatched twice."""
    require_services("kafka", "postgres", "redis", "minio")
    url, env = metrics_env()
    only = deployment(unique_id, tmp_path, workers=2, orchestrator_env=lambda _: env)
    async with only as (cluster, api, db):
        runs = [
            await start_run(api, effect_chain(f"fast{i}", FAST_PAIRS, 0))
            for i in range(FAST_CHAINS)
        ]

        async def mid_chains() -> bool:
            done = [await succeeded_count(db, run_id) for run_id in runs]
            assert max(done) < 2 * FAST_PAIRS, "a chain finished before the lock: too fast"
            return min(done) >= 6

        await assert_eventually(mid_chains, timeout=90, interval=0.02)
        locker = await statements_held_with_a_task_run_ahead(cluster, db, runs)
        await kill_the_orchestrator_with_its_statements(cluster, locker)
        cluster.start_orchestrator(env)

        await assert_each_run_once(api, db, runs)
        behind = await scrape_total(url, "cadenza_orchestrator_results_behind_dispatch_total")
        print(f"results applied behind the result that dispatched them: {behind:.0f}")
        assert behind >= 1, "no result came in the fetch of its cause: the drill missed"


PLANNED_RUNS = 4


async def test_kill_9_an_orchestrator_whose_plans_hang_after_early_dispatch(
    unique_id: str, tmp_path: Path, require_services: Callable[..., None]
) -> None:
    """Early dispatch of a plan under a crash: the table a plan's statement writes its task
    rows to is locked, so each new run's plan sends its first task.ready and hangs before its
    commit (the plans after it wait for it). The workers run that first task (a no-wait
    sleep: no side effect, nothing waits for the commit), then the only orchestrator is
    killed, its hung statements are cut off, and a fresh one starts. It gets the redelivered
    plans and the result of the task that already ran, in either order: a result before its
    plan waits for it (not dropped as an unknown task, which would leave the task to the
    sweeper's result_lost). Every run finishes, each effect once, nothing dispatched
    twice."""
    require_services("kafka", "postgres", "redis", "minio")
    url, env = metrics_env()
    only = deployment(unique_id, tmp_path, workers=2, orchestrator_env=lambda _: env)
    async with only as (cluster, api, db):
        locker = await db.connect()
        await locker.execute(text("LOCK TABLE tasks IN EXCLUSIVE MODE"))
        runs = [
            await start_run(api, effect_chain(f"planned{i}", 2, 0)) for i in range(PLANNED_RUNS)
        ]
        await assert_eventually(lambda: first_tasks_ran(cluster, runs), timeout=60)
        async with db.connect() as conn:
            statuses = await conn.execute(
                text("SELECT DISTINCT status FROM runs WHERE id = ANY(:ids)"), {"ids": runs}
            )
            assert [s for (s,) in statuses] == ["pending"]  # no plan committed
        await kill_the_orchestrator_with_its_statements(cluster, locker)
        cluster.start_orchestrator(env)

        await assert_each_run_once(api, db, runs)
        before_plan = "cadenza_orchestrator_results_before_plan_total"
        waited = await scrape_by(url, before_plan, "outcome", ("waited", "given_up"))
        print(f"results batches before their plan: {waited}")
        assert waited["given_up"] == 0


async def kill_the_orchestrator_with_its_statements(cluster: Any, locker: Any) -> None:
    """SIGKILL the only orchestrator, whose statements wait for ``locker``'s lock, then let
    the lock go. Its backends would run the hung statements once the lock goes (PostgreSQL
    sees the client gone only when it answers): they are cut off first, uncommitted."""
    try:
        (first,) = [p for p in cluster.processes if p.name == "orchestrator"]
        first.kill()
        await locker.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid() "
                "AND datname = current_database()"
            )
        )
        await locker.rollback()
    finally:
        await locker.close()


async def first_tasks_ran(cluster: Any, runs: list[str]) -> bool:
    """Whether a run's first task (``s0``) finished: its worker's done marker is set. (One
    plans batch is applied at a time: the first one's statement hangs, and the plans after
    it wait for it, unsent.)"""
    state, _ = settings_of(cluster)
    client = redis.Redis.from_url(state.redis_url)
    try:
        markers = [
            state.redis_key_prefix + keys.task_done(task_id_for(run_id, "s0"), 1) for run_id in runs
        ]
        return bool(await client.exists(*markers) >= 1)
    finally:
        await client.aclose()


async def statements_held_with_a_task_run_ahead(cluster: Any, db: Any, runs: list[str]) -> Any:
    """A connection holding a lock on the table every results batch's statement writes,
    once a task the database has not dispatched has finished (``ran_ahead``). Only one
    results batch is in flight at a time, and when every task it sent early has a side
    effect, those wait for the commit and none runs ahead: then the lock is let go (the
    chains move on) and taken again, for the next batch."""
    for _ in range(20):
        locker = await db.connect()
        await locker.execute(text("LOCK TABLE task_attempts IN EXCLUSIVE MODE"))
        try:
            await assert_eventually(lambda: ran_ahead(cluster, db, runs), timeout=3)
        except AssertionError:
            await locker.rollback()
            await locker.close()
            continue
        return locker
    raise AssertionError("no batch sent a task without side effects early: the drill missed")


async def ran_ahead(cluster: Any, db: Any, runs: list[str]) -> bool:
    """Whether a task finished (its worker's done marker is set) that the database has not
    dispatched: it was sent before its batch's statement, which waits for the lock."""
    state, _ = settings_of(cluster)
    client = redis.Redis.from_url(state.redis_url)
    try:
        done = [
            key.decode()[len(state.redis_key_prefix) :].split(":")[1]
            for run_id in runs
            async for key in client.scan_iter(
                match=f"{state.redis_key_prefix}task:{run_id}.*:1:done", count=1_000
            )
        ]
    finally:
        await client.aclose()
    if not done:
        return False
    async with db.connect() as conn:
        dispatched = {
            task_id
            for (task_id,) in await conn.execute(
                text("SELECT id FROM tasks WHERE id = ANY(:ids) AND attempt >= 1"), {"ids": done}
            )
        }
    return bool(set(done) - dispatched)


async def test_a_second_orchestrator_joins_mid_run(
    unique_id: str, tmp_path: Path, require_services: Callable[..., None]
) -> None:
    """Scaling out while runs are in flight: a second orchestrator joins, and the rebalance
    moves some partitions to it. The first forgets the runs of the partitions that went (the
    newcomer reads each whole on its next batch) and keeps the others without reading them
    again; every run finishes, each effect once, nothing dispatched twice."""
    require_services("kafka", "postgres", "redis", "minio")
    ports = [free_port(), free_port()]
    metrics = [f"http://127.0.0.1:{port}/metrics" for port in ports]
    first_env = {"CADENZA_ORCHESTRATOR_METRICS_PORT": str(ports[0])}
    async with deployment(unique_id, tmp_path, workers=2, orchestrator_env=lambda _: first_env) as (
        cluster,
        api,
        db,
    ):
        # 24 long chains (~20 s of sleeps each) over three partitions: at the rebalance the
        # first holds them all, and keeps one or two of the partitions (none of 24 on the
        # one it keeps: 1 chance in 16,000; with twelve it was 1 in 130). Long enough that
        # none has finished by then on a loaded machine: a finished run is held by no one.
        runs = [await start_run(api, effect_chain(f"chain{i}", 25, 0.8)) for i in range(24)]

        async def all_under_way() -> bool:
            return all([await succeeded_count(db, run_id) >= 1 for run_id in runs])

        await assert_eventually(all_under_way, timeout=60, interval=0.1)
        # Each outcome of a rebalance read in ONE scrape: the two counters move in one call,
        # and two scrapes could straddle it (kept read before, forgotten after).
        before = await scrape_by(metrics[0], REBALANCED, "outcome", OUTCOMES)
        cluster.start_orchestrator({"CADENZA_ORCHESTRATOR_METRICS_PORT": str(ports[1])})

        async def rebalanced() -> dict[str, float]:
            now = await scrape_by(metrics[0], REBALANCED, "outcome", OUTCOMES)
            moved = {o: now[o] - before[o] for o in OUTCOMES}
            assert moved["forgotten"] > 0, f"no run forgotten yet: {moved}"
            return moved

        moved = await assert_eventually(rebalanced, timeout=90, interval=0.2)
        print(
            f"at the join the first orchestrator kept {moved['kept']:.0f} run(s), forgot "
            f"{moved['forgotten']:.0f}"
        )
        done = await finished_runs(db, runs)
        assert not done, f"{len(done)} chain(s) finished before the rebalance: make them longer"
        assert moved["kept"] > 0, "the first orchestrator kept none of the runs it still owns"

        for run_id in runs:
            run = await finished(api, run_id, timeout=120)
            assert_exactly_once(run, await task_facts(db, run_id))
        assert await redispatches(db, runs) == []
        assert await attempts_above_one(db, runs) == []
        rebuilt = await scrape_total(metrics[1], MEMORY, outcome="rebuilt")
        print(f"the newcomer rebuilt {rebuilt:.0f} run(s)")
        assert rebuilt > 0, "the newcomer applied no run it took over"

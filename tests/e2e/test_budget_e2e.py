"""Budgets across separate processes on real Kafka/PostgreSQL/Redis/MinIO: a run whose
budget cannot cover one call ends ``budget_exceeded`` without calling the model, and a
worker killed with -9 while it holds a reservation leaves nothing reserved (the reservation
expires and another worker's reconciler releases it).

The LLM is the replay provider answering from the embedded model's cassette
(tests/worker/cassettes/agents.json), slowed to 3 s per answer so the worker can be killed
while its reservation is held.
"""

from __future__ import annotations

import httpx
import pytest
import redis.asyncio as aioredis
from cadenza_state import LLMCallRecord, StateSettings, create_engine
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from support import assert_eventually
from support.calc_agent import ASK, CALC_AGENT, replay_env
from support.cluster import Cluster

TERMINAL = {"succeeded", "failed", "cancelled", "budget_exceeded"}


@pytest.fixture
def cluster_env() -> dict[str, str]:
    """The conftest's `cluster` (gateway, orchestrator, one worker), its LLM answering from
    the cassette."""
    return {
        **replay_env(delay_s=3),
        "CADENZA_WORKER_BUDGET_RESERVATION_TTL_S": "4",
        "CADENZA_WORKER_BUDGET_RECONCILE_INTERVAL_S": "0.5",
    }


async def ledger_tokens(engine: AsyncEngine, run_id: str) -> int:
    """What the durable ledger (``llm_calls``) says a run spent, in tokens."""
    async with engine.connect() as conn:
        query = select(func.sum(LLMCallRecord.input_tokens + LLMCallRecord.output_tokens)).where(
            LLMCallRecord.run_id == run_id
        )
        return int((await conn.execute(query)).scalar_one())


async def finished(api: httpx.AsyncClient, run_id: str) -> dict[str, object] | None:
    run: dict[str, object] = (await api.get(f"/v1/runs/{run_id}")).json()
    return run if run["status"] in TERMINAL else None


async def test_budgets_stop_runs_and_survive_a_kill_9(cluster: Cluster) -> None:
    settings = StateSettings()
    redis = aioredis.Redis.from_url(settings.redis_url)
    prefix = f"{cluster.namespace}:"
    engine = create_engine(StateSettings(database_schema=cluster.namespace))
    try:
        async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as api:
            assert (await api.post("/v1/agents", json=CALC_AGENT)).status_code == 201

            # 1. A run budget too small for one call: the run ends budget_exceeded, no call.
            small = await api.post("/v1/runs", json={"spec": ASK, "budget": {"max_tokens": 10}})
            assert small.status_code == 201, small.text
            small_id = small.json()["id"]
            run = await assert_eventually(lambda: finished(api, small_id), timeout=60)
            assert run["status"] == "budget_exceeded", run
            error = run["error"]
            assert isinstance(error, dict)
            assert error["budget"]["budget"] == "run"
            assert error["budget"]["limit"] == 10
            async with engine.connect() as conn:
                calls = select(func.count()).where(LLMCallRecord.run_id == small_id)
                assert (await conn.execute(calls)).scalar_one() == 0

            # 2. kill -9 while a reservation is held: it is released, the run still finishes
            #    and the run's counter ends equal to what the ledger says was spent.
            big = await api.post(
                "/v1/runs", json={"spec": ASK, "budget": {"max_tokens": 1_000_000}}
            )
            run_id = big.json()["id"]
            zset = f"{prefix}budget:reservations"

            async def held() -> list[bytes] | None:
                return list(await redis.zrange(zset, 0, -1)) or None

            crashed = (await assert_eventually(held, timeout=60, interval=0.05))[0]
            worker = next(p for p in cluster.processes if p.name == "worker")
            worker.kill()
            cluster.start_worker()  # its reconciler releases the dead worker's reservation

            async def released() -> bool:
                state = await redis.hget(f"{prefix}budget:reservation:{crashed.decode()}", "state")
                return state == b"expired"

            await assert_eventually(released, timeout=60, interval=0.2)
            run = await assert_eventually(lambda: finished(api, run_id), timeout=120, interval=0.2)
            assert run["status"] == "succeeded", run

            async def nothing_reserved() -> bool:
                return await redis.zcard(zset) == 0

            await assert_eventually(nothing_reserved, timeout=30)
            spent = await ledger_tokens(engine, run_id)
            counted = await redis.hget(f"{prefix}budget:run:{run_id}", "tokens")
            assert counted is not None
            assert int(counted) == spent
    finally:
        await engine.dispose()
        await redis.aclose()


@pytest.mark.timeout(300)
async def test_a_pausing_budget_pauses_the_run_until_raised_and_resumed(
    cluster: Cluster,
) -> None:
    """``on_exceeded: pause`` on separate processes: the run pauses mid-task with nothing
    reserved; the operator raises the limit (the run's own with the resume, a tenant's with
    PUT /v1/budgets/day) and resumes; the held task resumes from its checkpoint and the run
    succeeds — every LLM call of the agent made exactly once, the counter equal to the ledger."""
    settings = StateSettings()
    redis = aioredis.Redis.from_url(settings.redis_url)
    prefix = f"{cluster.namespace}:"
    engine = create_engine(StateSettings(database_schema=cluster.namespace))

    async def calls_of(run_id: str) -> list[tuple[int, int]]:
        async with engine.connect() as conn:
            query = (
                select(LLMCallRecord.attempt, LLMCallRecord.turn)
                .where(LLMCallRecord.run_id == run_id)
                .order_by(LLMCallRecord.attempt, LLMCallRecord.turn)
            )
            return [(a, t) for a, t in (await conn.execute(query)).all()]

    async def nothing_reserved() -> bool:
        return await redis.zcard(f"{prefix}budget:reservations") == 0

    try:
        async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as api:
            assert (await api.post("/v1/agents", json=CALC_AGENT)).status_code == 201
            # What the agent's first call reserves: a stopped run's error says ("requested").
            probe = await api.post("/v1/runs", json={"spec": ASK, "budget": {"max_tokens": 10}})
            probed = await assert_eventually(lambda: finished(api, probe.json()["id"]), timeout=60)
            first_call = int(probed["error"]["budget"]["requested"])  # type: ignore[index]

            # 1. A run budget that fits the first call only, pausing: the run pauses.
            budget = {"max_tokens": first_call, "on_exceeded": "pause"}
            created = await api.post("/v1/runs", json={"spec": ASK, "budget": budget})
            assert created.status_code == 201, created.text
            run_id = created.json()["id"]
            run = await assert_eventually(
                lambda: paused_or_finished(api, run_id), timeout=60, interval=0.2
            )
            assert run["status"] == "paused", run
            error = run["error"]
            assert isinstance(error, dict)
            assert (error["budget"]["budget"], error["budget"]["limit"]) == ("run", first_call)
            assert error["budget"]["spent"] > 0  # the first call's real usage
            assert [t["status"] for t in run["tasks"]] == ["paused"]  # type: ignore[union-attr]
            assert await calls_of(run_id) == [(1, 0)]  # turn 0 made, turn 1 refused
            await assert_eventually(nothing_reserved, timeout=30)

            # Resuming raises the run's limit; the agent goes on at its second call.
            resumed = await api.post(
                f"/v1/runs/{run_id}/resume", json={"budget": {"max_tokens": 1_000_000}}
            )
            assert resumed.status_code == 202, resumed.text
            run = await assert_eventually(lambda: finished(api, run_id), timeout=120, interval=0.2)
            assert run["status"] == "succeeded", run
            calls = await calls_of(run_id)
            assert calls[0] == (1, 0)
            assert len(calls) == 3
            assert len({t for _, t in calls}) == 3  # each call once
            assert [a for a, _ in calls[1:]] == [2, 2]  # made by the resumed attempt
            again = await api.post(f"/v1/runs/{run_id}/resume")
            assert again.status_code == 409  # only a paused run resumes

            spent = await ledger_tokens(engine, run_id)
            counted = await redis.hget(f"{prefix}budget:run:{run_id}", "tokens")
            assert counted is not None
            assert int(counted) == spent  # no double spend

            # 2. A tenant day budget that pauses: raised with PUT /v1/budgets/day, resumed.
            day = {"max_tokens": 10, "on_exceeded": "pause"}
            assert (await api.put("/v1/budgets/day", json=day)).status_code == 200
            tenant_run = (await api.post("/v1/runs", json={"spec": ASK})).json()["id"]
            run = await assert_eventually(
                lambda: paused_or_finished(api, tenant_run), timeout=60, interval=0.2
            )
            assert run["status"] == "paused", run
            assert run["error"]["budget"]["budget"] == "tenant_day"  # type: ignore[index]
            assert await calls_of(tenant_run) == []
            raised = {"max_tokens": 10_000_000, "on_exceeded": "pause"}
            assert (await api.put("/v1/budgets/day", json=raised)).status_code == 200
            assert (await api.post(f"/v1/runs/{tenant_run}/resume")).status_code == 202
            run = await assert_eventually(
                lambda: finished(api, tenant_run), timeout=120, interval=0.2
            )
            assert run["status"] == "succeeded", run
            assert [a for a, _ in await calls_of(tenant_run)] == [2, 2, 2]
            await assert_eventually(nothing_reserved, timeout=30)
    finally:
        await engine.dispose()
        await redis.aclose()


async def paused_or_finished(api: httpx.AsyncClient, run_id: str) -> dict[str, object] | None:
    run: dict[str, object] = (await api.get(f"/v1/runs/{run_id}")).json()
    return run if run["status"] in TERMINAL | {"paused"} else None

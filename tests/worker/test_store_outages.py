"""A platform store away mid-attempt pauses the attempt instead of spending its tries
(cadenza_worker.store_outages): through a tool's context, in the engine's own calls, inside
an agent's loop; a tool's own services being away stays the tool's error."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
import pytest_asyncio
import redis.exceptions as redis_errors
import urllib3
from agent_support import ScriptedProvider, ScriptedRegistry, answer, calls, register_agent
from cadenza_events import RetryableError, TaskReady
from cadenza_state import (
    HotState,
    LocalObjectStore,
    ObjectNotFound,
    S3ObjectStore,
    StateSettings,
    create_redis,
)
from cadenza_worker import Progress, ToolContext, ToolRegistry, run_with_retries
from cadenza_worker.errors import StoreUnavailable
from cadenza_worker.store_outages import (
    guard_hot,
    guard_objects,
    guard_sessions,
    platform_calls,
    store_outage,
)
from cadenza_worker.tools import DatasetLookupTool, FlakyTool
from minio import Minio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from worker_support import BOTH_STACKS, Stack, metric, retry_task, tool_context

DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_POSTGRES = "postgresql+asyncpg://cadenza@127.0.0.1:1/cadenza"
STORES = ("redis", "postgresql", "minio")


def task() -> TaskReady:
    return retry_task(name="flaky", timeout_s=10)


def context(hot: HotState, sessions: async_sessionmaker[AsyncSession] | None = None) -> ToolContext:
    return tool_context(hot, LocalObjectStore(Path("/nonexistent")), sessions)


@pytest_asyncio.fixture(loop_scope="function")
async def dead_hot() -> AsyncIterator[HotState]:
    hot = HotState(create_redis(StateSettings(redis_url=DEAD_REDIS)), "test:")
    yield hot
    await hot.aclose()


async def test_a_tool_whose_platform_redis_is_away_pauses_the_attempt(
    dead_hot: HotState,
) -> None:
    """`flaky` counts its calls in the platform's Redis. Away, the call is not the tool's
    failure: no try is spent (one call), the attempt leaves as StoreUnavailable for the bus
    to hold; unguarded, the same outage burns every try and fails the task."""
    tool, calls_made = FlakyTool(), 0

    async def once(ctx: ToolContext) -> Any:
        nonlocal calls_made
        calls_made += 1
        return await tool({"failures": 0}, ctx)

    guarded = context(guard_hot(dead_hot))
    with pytest.raises(StoreUnavailable) as raised:
        await run_with_retries(task(), lambda n: once(guarded), Progress())
    assert calls_made == 1
    assert raised.value.store == "redis"
    assert "redis unreachable" in str(raised.value)
    assert isinstance(raised.value.__cause__, redis_errors.ConnectionError)

    calls_made = 0  # the gap this closes: the raw client's error counted as the tool's
    outcome = await run_with_retries(task(), lambda n: once(context(dead_hot)), Progress())
    assert (outcome.status, outcome.tries, calls_made) == ("failed", 3, 3)


async def test_a_tools_own_connection_error_stays_its_retryable_error(tmp_path: Path) -> None:
    """A tool's own service refusing connections (no platform store involved) is what the
    task's retry policy is for: tries are spent, then the task fails."""
    calls_made = 0

    async def once(n: int) -> Any:
        nonlocal calls_made
        calls_made += 1
        raise ConnectionRefusedError("the tool's own API is down")

    outcome = await run_with_retries(task(), once, Progress())
    assert (outcome.status, outcome.tries, calls_made) == ("failed", 3, 3)
    assert outcome.error is not None
    assert outcome.error.retryable


async def test_a_guarded_store_is_the_store_when_it_is_up(tmp_path: Path) -> None:
    """The guard changes nothing else: values come back, the stores' own errors (not found,
    bad key) and the tool's errors pass through unchanged."""
    hot = guard_hot(HotState(create_redis(StateSettings(redis_backend="memory")), "test:"))
    assert await hot.incr_counter("c", 2) == 2
    assert await hot.get_counter("c") == 2
    assert hot.key("x") == "test:x"
    objects = guard_objects(LocalObjectStore(tmp_path))
    await objects.put("a/b", b"payload")
    assert await objects.get("a/b") == b"payload"
    with pytest.raises(ObjectNotFound):
        await objects.get("a/missing")
    with pytest.raises(RetryableError, match="boom"), platform_calls():
        raise RetryableError("boom")


async def test_a_tool_whose_platform_database_is_away_pauses_instead_of_failing() -> None:
    """The dataset lookups read the platform's PostgreSQL: down, the bare connect error
    reached the task as the tool's error; through the guarded sessions it is an outage."""
    engine = create_async_engine(DEAD_POSTGRES)
    try:
        lookup = DatasetLookupTool("get_psp_status", "psps", "psp", "PSP status", what="PSP")
        sessions = async_sessionmaker(engine)
        guarded = context(
            HotState(create_redis(StateSettings(redis_backend="memory"))),
            sessions=guard_sessions(sessions),
        )
        with pytest.raises(StoreUnavailable, match="postgresql unreachable"):
            await lookup({"psp": "stripe"}, guarded)
        bare = context(
            HotState(create_redis(StateSettings(redis_backend="memory"))), sessions=sessions
        )
        with pytest.raises(ConnectionRefusedError):
            await lookup({"psp": "stripe"}, bare)
    finally:
        await engine.dispose()


async def test_a_tool_whose_object_store_is_away_pauses() -> None:
    # No urllib3 retries: the refusal comes at once instead of after MinIO's backoff.
    client = Minio(
        "127.0.0.1:1", "k", "s", secure=False, http_client=urllib3.PoolManager(retries=False)
    )
    objects = guard_objects(S3ObjectStore(client, "bucket"))
    with pytest.raises(StoreUnavailable, match="minio unreachable") as raised:
        await objects.get("some/key")
    assert raised.value.store == "minio"


def test_the_checkpointers_lost_connection_is_an_outage_a_cancelled_query_is_not() -> None:
    assert store_outage(psycopg.OperationalError("connection refused")) is not None
    lost = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    assert store_outage(lost) is not None
    assert store_outage(psycopg.errors.QueryCanceled("statement timeout")) is None
    assert store_outage(ValueError("bad")) is None
    # Cadenza's own errors already say what they mean, even when caused by an outage.
    wrapped = RetryableError("search down")
    wrapped.__cause__ = ConnectionRefusedError()
    assert store_outage(wrapped) is None


class BlippingTool:
    """A pure tool that reads a counter through its context's Redis; the test makes the
    first read fail as a lost connection would (the store blips, the worker stays up)."""

    name = "blip"
    description = "Read a counter."
    side_effects = False

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        self.calls += 1
        return {"count": await ctx.hot.get_counter("blip")}


@pytest.fixture
def blip_once(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """``HotState.get_counter`` (used by no engine path) fails once with a lost connection."""
    failed: list[float] = []
    real = HotState.get_counter

    async def get_counter(self: HotState, key: str) -> int:
        if not failed:
            failed.append(time.monotonic())
            raise redis_errors.ConnectionError("Connection closed by server.")
        return await real(self, key)

    monkeypatch.setattr(HotState, "get_counter", get_counter)
    return failed


@BOTH_STACKS
async def test_a_store_blip_in_a_tool_task_costs_no_try(
    stack: Stack, blip_once: list[float]
) -> None:
    """With a single try allowed, a tool error would fail the task; the blip pauses the
    attempt, the bus runs it again, and it succeeds on its one try."""
    tool = BlippingTool()
    before = metric("cadenza_worker_store_outages_total", store="redis")
    await stack.start_worker(tools=ToolRegistry([tool]))
    task_ready = await stack.add_task("blip", {}, max_attempts=1)
    await stack.dispatch(task_ready)

    result = await stack.result(task_ready)
    assert (result.status, result.tries, result.output) == ("succeeded", 1, {"count": 0})
    assert metric("cadenza_worker_store_outages_total", store="redis") == before + 1
    assert blip_once
    assert tool.calls == 2
    assert "task.retrying" not in stack.event_kinds(task_ready.task_id)


@BOTH_STACKS
async def test_a_store_blip_inside_an_agents_tool_call_is_no_observation(
    stack: Stack, blip_once: list[float]
) -> None:
    """Inside an agent, a tool's failure is shown to the model; a platform store away is
    not the tool's failure: the attempt pauses and resumes at the call from its checkpoint,
    and the model never sees an error."""
    ref = await register_agent(stack, tools=["blip"])
    provider = ScriptedProvider([calls(("blip", {})), answer("done")])
    tool = BlippingTool()
    await stack.start_worker(tools=ToolRegistry([tool]), llm=ScriptedRegistry(provider))
    task_ready = await stack.add_task(ref, {"prompt": "go"}, kind="agent", max_attempts=1)
    await stack.dispatch(task_ready)

    result = await stack.result(task_ready)
    assert (result.status, result.tries, result.output) == ("succeeded", 1, "done")
    assert tool.calls == 2
    assert len(provider.requests) == 2  # turn 0 is not asked again after the pause
    observation = provider.requests[1].messages[-1]["content"]
    assert "count" in observation
    assert "error" not in observation


def fail_once(monkeypatch: pytest.MonkeyPatch, owner: type, name: str, exc: Exception) -> list[str]:
    """``owner.name`` (an async method) raises ``exc`` on its first call only."""
    failed: list[str] = []
    real = getattr(owner, name)

    async def once(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not failed:
            failed.append(name)
            raise exc
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, once)
    return failed


@BOTH_STACKS
async def test_the_engines_own_store_calls_in_an_attempt_cost_no_try(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approval gate's read (tool tasks) and the agent definition's read (agent tasks)
    are the engine's calls: a lost connection there pauses the attempt too."""
    from cadenza_worker.agents.definitions import AgentDefinitions
    from cadenza_worker.holds import ApprovalGate
    from sqlalchemy.exc import OperationalError

    gate = fail_once(
        monkeypatch, ApprovalGate, "check", redis_errors.ConnectionError("Connection reset")
    )
    lost = OperationalError("SELECT", {}, ConnectionResetError("connection was closed"))
    definitions = fail_once(monkeypatch, AgentDefinitions, "load", lost)
    ref = await register_agent(stack, tools=[])
    before = {s: metric("cadenza_worker_store_outages_total", store=s) for s in STORES}
    provider = ScriptedProvider([answer("done")])
    tool = BlippingTool()
    await stack.start_worker(tools=ToolRegistry([tool]), llm=ScriptedRegistry(provider))
    tool_task = await stack.add_task("blip", {}, max_attempts=1)
    agent_task = await stack.add_task(ref, {"prompt": "go"}, kind="agent", max_attempts=1)
    await stack.dispatch(tool_task)
    await stack.dispatch(agent_task)

    for ready in (tool_task, agent_task):
        result = await stack.result(ready)
        assert (result.status, result.tries) == ("succeeded", 1), result
    assert gate == ["check"]
    assert definitions == ["load"]
    paused = {s: metric("cadenza_worker_store_outages_total", store=s) - before[s] for s in STORES}
    assert paused == {"redis": 1, "postgresql": 1, "minio": 0}


class DatabaseRestartingTool:
    """A pure tool whose first call cuts every connection to the platform's database, as a
    PostgreSQL restart does, from outside the worker's pools."""

    name = "cut_db"
    description = "Cut the database connections."
    side_effects = False

    def __init__(self, database_url: str) -> None:
        self._dsn = database_url.replace("+asyncpg", "")
        self.calls = 0

    async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        self.calls += 1
        if self.calls == 1:
            conn = await asyncpg.connect(self._dsn)
            try:
                cut = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                )
            finally:
                await conn.close()
            assert cut > 0
        return {"cut": self.calls == 1}


@pytest.mark.integration
@pytest.mark.parametrize("stack", ["real"], indirect=True)
async def test_an_agent_rides_out_its_databases_connections_cut_mid_loop(stack: Stack) -> None:
    """The real thing for agents: every PostgreSQL connection (the state pool's, the
    LangGraph checkpointer's psycopg pool's) cut while a tool runs. Writing that call's
    accounting and checkpoint fails on a dead connection: the attempt pauses and resumes
    from the checkpoint before the call. One try; the model is never asked turn 0 again."""
    ref = await register_agent(stack, tools=["cut_db"])
    # LangGraph saves a step's checkpoint while the next step runs: turn 1 may be asked
    # before the cut surfaces, and again after the pause (its answer was never saved).
    provider = ScriptedProvider([calls(("cut_db", {})), answer("done"), answer("done")])
    tool = DatabaseRestartingTool(stack.resources.state.settings.database_url)
    before = metric("cadenza_worker_store_outages_total", store="postgresql")
    await stack.start_worker(tools=ToolRegistry([tool]), llm=ScriptedRegistry(provider))
    task_ready = await stack.add_task(ref, {"prompt": "go"}, kind="agent", max_attempts=1)
    await stack.dispatch(task_ready)

    result = await stack.result(task_ready, timeout=60)
    assert (result.status, result.tries, result.output) == ("succeeded", 1, "done"), result
    turns = [len(request.messages) for request in provider.requests]
    assert turns[0] == 2  # system + user: turn 0, asked once
    assert turns.count(2) == 1, turns
    assert metric("cadenza_worker_store_outages_total", store="postgresql") > before

"""Dataset-backed tools against a real database (SQLite, and PostgreSQL for the integration
run): lookups by key, tenant isolation, not-found answers, the agent-facing schema."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cadenza_events import CadenzaError
from cadenza_state import (
    HotState,
    LocalObjectStore,
    ReferenceRecord,
    StateSettings,
    create_engine,
    create_redis,
    migrate,
    session_factory,
)
from cadenza_worker import InvalidParamsError, ToolContext, WorkerSettings, builtin_tools
from cadenza_worker.tools import DatasetLookupTool, agent_tool_schema, scenario_tools
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.cleanup import drop_schema
from worker_support import tool_context

SEED = [
    ("acme", "transactions", "tx_1", {"amount": 120.5, "psp": "stripe", "status": "declined"}),
    ("acme", "psps", "stripe", {"status": "outage", "error_rate": 0.4}),
    ("acme", "routing_logs", "tx_1", {"attempts": [{"psp": "stripe", "result": "timeout"}]}),
    ("acme", "customers", "cus_1", {"country": "FR", "chargebacks": 0}),
    ("acme", "tickets", "T-100", {"subject": "Refund not received", "priority": "high"}),
    ("globex", "transactions", "tx_1", {"amount": 5, "psp": "adyen"}),
]


@pytest_asyncio.fixture(
    loop_scope="function",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)],
)
async def sessions(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    unique_id: str,
    require_services: Callable[..., None],
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    if request.param == "postgres":
        require_services("postgres")
        settings = StateSettings(database_schema=unique_id)
    else:
        settings = StateSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'ref.db'}")
    engine = create_engine(settings)
    try:
        await migrate(engine)
        factory = session_factory(engine)
        async with factory() as session, session.begin():
            for tenant, dataset, key, data in SEED:
                session.add(ReferenceRecord(tenant_id=tenant, dataset=dataset, key=key, data=data))
        yield factory
    finally:
        await engine.dispose()
        if request.param == "postgres":
            await drop_schema(settings)


@pytest_asyncio.fixture(loop_scope="function")
async def context(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> AsyncIterator[Callable[..., ToolContext]]:
    hot = HotState(create_redis(StateSettings(redis_backend="memory")), "test:")

    def make(tenant: str = "acme", with_db: bool = True) -> ToolContext:
        objects = LocalObjectStore(tmp_path / "objects")
        db = sessions if with_db else None
        return tool_context(hot, objects, db, tenant=tenant, node="lookup")

    yield make
    await hot.aclose()


def tool(name: str) -> DatasetLookupTool:
    return next(t for t in scenario_tools() if t.name == name)


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("get_transaction", {"transaction_id": "tx_1"}, SEED[0][3]),
        ("get_psp_status", {"psp": "stripe"}, SEED[1][3]),
        ("check_routing_logs", {"transaction_id": "tx_1"}, SEED[2][3]),
        ("get_customer", {"customer_id": "cus_1"}, SEED[3][3]),
        ("get_ticket", {"ticket_id": "T-100"}, SEED[4][3]),
    ],
)
async def test_each_scenario_tool_reads_its_dataset(
    context: Callable[..., ToolContext], name: str, params: dict[str, Any], expected: Any
) -> None:
    assert await tool(name)(params, context()) == expected


async def test_a_tenant_reads_only_its_own_records(context: Callable[..., ToolContext]) -> None:
    get = tool("get_transaction")
    assert (await get({"transaction_id": "tx_1"}, context("globex")))["psp"] == "adyen"
    nobody = await get({"transaction_id": "tx_1"}, context("initech"))
    assert nobody == {"found": False, "error": "no transaction 'tx_1'"}


async def test_a_missing_record_is_an_observation_not_a_failure(
    context: Callable[..., ToolContext],
) -> None:
    assert await tool("get_transaction")({"transaction_id": "tx_9"}, context()) == {
        "found": False,
        "error": "no transaction 'tx_9'",
    }
    assert (await tool("check_routing_logs")({"transaction_id": "tx_9"}, context()))[
        "error"
    ] == "no routing log for transaction 'tx_9'"


async def test_bad_arguments_and_a_missing_database_fail_clearly(
    context: Callable[..., ToolContext],
) -> None:
    get = tool("get_transaction")
    with pytest.raises(InvalidParamsError, match="transaction_id"):
        await get({"id": "tx_1"}, context())
    with pytest.raises(InvalidParamsError, match="transaction_id"):
        await get({"transaction_id": ""}, context())
    with pytest.raises(CadenzaError, match="no database") as info:
        await get({"transaction_id": "tx_1"}, context(with_db=False))
    assert info.value.code == "no_database"
    assert not info.value.retryable


async def test_builtin_registry_serves_the_lookups_with_agent_schemas(
    context: Callable[..., ToolContext],
) -> None:
    registry = builtin_tools(WorkerSettings(metrics_port=0))
    try:
        custom = DatasetLookupTool("get_merchant", "merchants", "merchant_id", "A merchant.")
        registry.register(custom)
        found = registry.get("get_psp_status")
        assert found is not None
        assert (await found({"psp": "stripe"}, context()))["status"] == "outage"
        schema = agent_tool_schema(found)
        assert schema is not None
        assert schema["name"] == "get_psp_status"
        assert "payment service provider" in schema["description"]
        assert schema["parameters"]["required"] == ["psp"]
        assert schema["parameters"]["additionalProperties"] is False
        assert (await custom({"merchant_id": "m1"}, context()))["error"] == "no merchant 'm1'"
    finally:
        await registry.aclose()

"""`calculator` and `current_time`: results, refused input (no attribute access, no
resource exhaustion) and the schemas agents see; `http_request` describes itself too."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cadenza_events import CadenzaError
from cadenza_state import HotState, LocalObjectStore, StateSettings, create_redis
from cadenza_worker import InvalidParamsError, ToolContext, WorkerSettings, builtin_tools
from cadenza_worker.tools import CalculatorTool, CurrentTimeTool, agent_tool_schema, calculate
from worker_support import tool_context


@pytest_asyncio.fixture(loop_scope="function")
async def ctx(tmp_path: Path) -> AsyncIterator[ToolContext]:
    hot = HotState(create_redis(StateSettings(redis_backend="memory")), "test:")
    yield tool_context(hot, LocalObjectStore(tmp_path / "objects"), node="agent")
    await hot.aclose()


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(120 - 20) * 0.5", 50.0),
        ("2 ** 10", 1024),
        ("7 // 2 + 7 % 2", 4),
        ("-3 + +4", 1),
        ("sqrt(16) + abs(-2) + max(1, 5, 3) - min(4, 2)", 9.0),
        ("round(2.675 * 100) / 100", 2.68),
        ("round(3.14159, 2)", 3.14),
        ("floor(2.7) + ceil(2.1)", 5),
        ("log(8, 2) + log10(1000)", 6.0),
        ("exp(0) + pi - pi + e - e", 1.0),
        ("2 ** -1", 0.5),
    ],
)
def test_calculator_evaluates_arithmetic(expression: str, expected: float) -> None:
    assert calculate(expression) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("().__class__.__bases__", "attribute access is not allowed"),
        ("(1).real", "attribute access is not allowed"),
        ("__import__('os').system('true')", "only plain function calls"),
        ("__import__('os')", "'__import__' not defined"),
        ("open('/etc/passwd')", "'open' not defined"),
        ("x + 1", "'x' is not defined"),
        ("'a' * 3", "only numbers are allowed"),
        ("True + 1", "only numbers are allowed"),
        ("[1, 2][0]", "is not allowed"),
        ("1 < 2", "comparison is not allowed"),
        ("(lambda: 1)()", "only plain function calls"),
        ("lambda: 1", "lambda is not allowed"),
        ("round(1.5, ndigits=1)", "keyword arguments are not allowed"),
        ("1; 2", "cannot parse"),
        ("1 +", "cannot parse"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("sqrt(-1)", "math domain error"),
        ("(-8) ** 0.5", "not a real number"),
        ("exp(1000)", "overflows"),
        ("1e308 * 10", "not a finite number"),
        ("   ", "empty"),
    ],
)
def test_calculator_refuses_what_is_not_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(CadenzaError, match=message) as info:
        calculate(expression)
    assert info.value.code == "invalid_expression"
    assert not info.value.retryable


@pytest.mark.parametrize(
    "expression",
    ["9 ** 9 ** 9", "2 ** 5000", "10 ** 10 ** 10", "(2 ** 4000) * (2 ** 4000)", "99999 ** 9999"],
)
def test_calculator_bounds_huge_numbers_without_computing_them(expression: str) -> None:
    started = time.perf_counter()
    with pytest.raises(CadenzaError, match="too large"):
        calculate(expression)
    assert time.perf_counter() - started < 0.5  # refused up front, not after the work


def test_calculator_refuses_long_and_deeply_nested_expressions() -> None:
    with pytest.raises(CadenzaError, match="longer than 500"):
        calculate("1+" * 300 + "1")
    with pytest.raises(CadenzaError, match="cannot parse"):
        calculate("(" * 240 + "1" + ")" * 240)


async def test_calculator_tool_answers_with_expression_and_result(ctx: ToolContext) -> None:
    tool = CalculatorTool()
    assert await tool({"expression": "1250 * 0.029 + 0.3"}, ctx) == {
        "expression": "1250 * 0.029 + 0.3",
        "result": pytest.approx(36.55),
    }
    with pytest.raises(InvalidParamsError, match="expression"):
        await tool({"expr": "1"}, ctx)


async def test_current_time_in_a_zone(ctx: ToolContext) -> None:
    fixed = datetime(2026, 1, 15, 12, 30, tzinfo=UTC)
    tool = CurrentTimeTool(clock=lambda: fixed)
    paris = await tool({"timezone": "Europe/Paris"}, ctx)
    assert paris == {
        "timezone": "Europe/Paris",
        "iso": "2026-01-15T13:30:00+01:00",
        "unix": fixed.timestamp(),
        "weekday": "Thursday",
        "utc_offset": "+0100",
    }
    assert (await tool({}, ctx))["iso"] == "2026-01-15T12:30:00+00:00"
    real = await CurrentTimeTool()({"timezone": "UTC"}, ctx)
    assert abs(real["unix"] - time.time()) < 5


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime"])
async def test_current_time_names_an_unknown_zone(ctx: ToolContext, zone: str) -> None:
    with pytest.raises(CadenzaError, match="unknown time zone") as info:
        await CurrentTimeTool()({"timezone": zone}, ctx)
    assert info.value.code == "unknown_timezone"
    assert zone in info.value.message


async def test_agent_tools_describe_their_arguments() -> None:
    registry = builtin_tools(WorkerSettings(metrics_port=0))
    try:
        schemas: dict[str, Any] = {}
        for name in ("calculator", "current_time", "http_request"):
            tool = registry.get(name)
            assert tool is not None
            schemas[name] = agent_tool_schema(tool)
    finally:
        await registry.aclose()
    assert schemas["calculator"]["parameters"]["required"] == ["expression"]
    assert schemas["current_time"]["parameters"]["properties"]["timezone"]["default"] == "UTC"
    http = schemas["http_request"]
    assert http["description"].startswith("Make one HTTP request")
    assert {"url", "method", "headers", "json", "body"} <= set(http["parameters"]["properties"])

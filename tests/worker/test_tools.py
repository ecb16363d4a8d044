"""The built-in tools, called directly (no worker, no bus)."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cadenza_events import CadenzaError
from cadenza_state import HotState, LocalObjectStore, StateSettings, create_redis
from cadenza_worker import (
    BlockedAddressError,
    HttpStatusError,
    InvalidParamsError,
    ResponseTooLargeError,
    ToolContext,
    ToolRegistry,
    WorkerSettings,
    builtin_tools,
)
from cadenza_worker.tools import TransformTool, blocked_reason
from cadenza_workflow import BUILTIN_TOOLS
from worker_support import HttpServer


@pytest_asyncio.fixture(loop_scope="function")
async def ctx(unique_id: str, tmp_path: Path) -> AsyncIterator[ToolContext]:
    hot = HotState(create_redis(StateSettings(redis_backend="memory")), f"test:{unique_id}:")
    try:
        yield ToolContext(
            tenant_id="acme",
            run_id="run-1",
            task_id=f"task-{unique_id}",
            node_id="node",
            attempt=1,
            try_number=1,
            hot=hot,
            objects=LocalObjectStore(tmp_path / "objects"),
        )
    finally:
        await hot.aclose()


@pytest_asyncio.fixture(loop_scope="function")
async def tools() -> AsyncIterator[ToolRegistry]:
    registry = builtin_tools(WorkerSettings(metrics_port=0))
    try:
        yield registry
    finally:
        await registry.aclose()


@pytest_asyncio.fixture(loop_scope="function")
async def open_tools() -> AsyncIterator[ToolRegistry]:
    """Tools allowed to reach private/loopback addresses (the test server is on 127.0.0.1)."""
    registry = builtin_tools(WorkerSettings(metrics_port=0, http_allow_private=True))
    try:
        yield registry
    finally:
        await registry.aclose()


async def call(registry: ToolRegistry, name: str, params: dict[str, Any], ctx: ToolContext) -> Any:
    tool = registry.get(name)
    assert tool is not None
    return await tool(params, ctx)


def test_registry_provides_exactly_the_builtin_tools(tools: ToolRegistry) -> None:
    assert tools.names() == BUILTIN_TOOLS


def test_registry_refuses_duplicate_names() -> None:
    with pytest.raises(ValueError, match="already registered"):
        ToolRegistry([TransformTool(), TransformTool()])


async def test_transform_returns_its_params(tools: ToolRegistry, ctx: ToolContext) -> None:
    params = {"greeting": "hello, ada", "n": [1, 2, {"x": None}]}
    assert await call(tools, "transform", params, ctx) == params


async def test_noop_returns_empty_object(tools: ToolRegistry, ctx: ToolContext) -> None:
    assert await call(tools, "noop", {"ignored": True}, ctx) == {}


async def test_sleep_sleeps_and_is_cancellable(tools: ToolRegistry, ctx: ToolContext) -> None:
    assert await call(tools, "sleep", {"seconds": 0.01}, ctx) == {"slept_s": 0.01}
    started = time.monotonic()
    job = asyncio.create_task(call(tools, "sleep", {"seconds": 30}, ctx))
    await asyncio.sleep(0.05)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "params", [{}, {"seconds": -1}, {"seconds": "soon"}, {"seconds": 1, "extra": 1}]
)
async def test_sleep_rejects_bad_params(
    tools: ToolRegistry, ctx: ToolContext, params: dict[str, Any]
) -> None:
    with pytest.raises(InvalidParamsError) as err:
        await call(tools, "sleep", params, ctx)
    assert err.value.retryable is False
    assert err.value.code == "invalid_params"


async def test_flaky_fails_then_counts_calls(tools: ToolRegistry, ctx: ToolContext) -> None:
    params = {"failures": 2, "key": "charge"}
    for expected in (1, 2):
        with pytest.raises(CadenzaError) as err:
            await call(tools, "flaky", params, ctx)
        assert err.value.retryable is True
        assert err.value.code == "flaky_failure"
        assert f"call {expected}" in err.value.message
    assert await call(tools, "flaky", params, ctx) == {"calls": 3}
    # Another key counts on its own; the default key is the task.
    assert await call(tools, "flaky", {"failures": 0, "key": "other"}, ctx) == {"calls": 1}
    assert await call(tools, "flaky", {"failures": 0}, ctx) == {"calls": 1}


# -- http_request -----------------------------------------------------------------------------


async def test_http_request_json_round_trip(
    open_tools: ToolRegistry, ctx: ToolContext, http_server: HttpServer
) -> None:
    out = await call(
        open_tools,
        "http_request",
        {
            "url": http_server.url("/echo?q=1"),
            "method": "post",
            "headers": {"X-Test": "yes", "Host": "evil.example"},
            "json": {"a": 1},
        },
        ctx,
    )
    assert out["status"] == 200
    assert out["headers"]["content-type"] == "application/json"
    assert out["json"] == {
        "method": "POST",
        "path": "/echo?q=1",
        "host": f"127.0.0.1:{http_server.port}",  # from the URL, never the params
        "header": "yes",
        "body": '{"a":1}',
    }


async def test_http_request_text_body_and_raw_body(
    open_tools: ToolRegistry, ctx: ToolContext, http_server: HttpServer
) -> None:
    out = await call(open_tools, "http_request", {"url": http_server.url("/text")}, ctx)
    assert out == {"status": 200, "headers": out["headers"], "body": "héllo"}
    echo = await call(
        open_tools,
        "http_request",
        {"url": http_server.url("/echo"), "method": "PUT", "body": "plain"},
        ctx,
    )
    assert echo["json"]["body"] == "plain"


async def test_http_request_localhost_name_resolves_and_connects(
    open_tools: ToolRegistry, ctx: ToolContext, http_server: HttpServer
) -> None:
    out = await call(
        open_tools, "http_request", {"url": http_server.url("/echo", host="localhost")}, ctx
    )
    assert out["json"]["host"] == f"localhost:{http_server.port}"


async def test_http_request_5xx_is_retryable_4xx_is_not(
    open_tools: ToolRegistry, ctx: ToolContext, http_server: HttpServer
) -> None:
    with pytest.raises(HttpStatusError) as err:
        await call(open_tools, "http_request", {"url": http_server.url("/status/503")}, ctx)
    assert (err.value.code, err.value.retryable, err.value.status) == ("http_503", True, 503)
    with pytest.raises(HttpStatusError) as err:
        await call(open_tools, "http_request", {"url": http_server.url("/status/404")}, ctx)
    assert (err.value.code, err.value.retryable) == ("http_404", False)
    with pytest.raises(HttpStatusError) as err:
        await call(open_tools, "http_request", {"url": http_server.url("/status/429")}, ctx)
    assert err.value.retryable is True


async def test_http_request_caps_response_size(ctx: ToolContext, http_server: HttpServer) -> None:
    registry = builtin_tools(
        WorkerSettings(metrics_port=0, http_allow_private=True, http_max_response_bytes=1000)
    )
    try:
        with pytest.raises(ResponseTooLargeError) as err:
            await call(registry, "http_request", {"url": http_server.url("/big")}, ctx)
        assert err.value.retryable is False
    finally:
        await registry.aclose()


async def test_http_request_timeout_is_capped_and_retryable(
    ctx: ToolContext, http_server: HttpServer
) -> None:
    registry = builtin_tools(
        WorkerSettings(metrics_port=0, http_allow_private=True, http_timeout_s=0.2)
    )
    try:
        started = time.monotonic()
        with pytest.raises(CadenzaError) as err:
            await call(
                registry, "http_request", {"url": http_server.url("/slow"), "timeout_s": 60}, ctx
            )
        assert time.monotonic() - started < 3
        assert (err.value.code, err.value.retryable) == ("http_timeout", True)
    finally:
        await registry.aclose()


async def test_http_request_connection_error_is_retryable(
    open_tools: ToolRegistry, ctx: ToolContext
) -> None:
    with pytest.raises(CadenzaError) as err:
        await call(open_tools, "http_request", {"url": "http://127.0.0.1:9/"}, ctx)
    assert (err.value.code, err.value.retryable) == ("http_connection", True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/echo",
        "http://localhost:{port}/echo",
        "http://[::1]:{port}/echo",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://224.0.0.1/",
        "http://100.100.100.200/",
    ],
)
async def test_http_request_refuses_non_public_addresses_by_default(
    tools: ToolRegistry, ctx: ToolContext, http_server: HttpServer, url: str
) -> None:
    with pytest.raises(BlockedAddressError) as err:
        await call(tools, "http_request", {"url": url.format(port=http_server.port)}, ctx)
    assert err.value.retryable is False
    assert err.value.code == "blocked_address"
    assert http_server.hits == {}  # refused before connecting


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"url": "ftp://example.com/x"},
        {"url": "not a url"},
        {"url": "http://user:pw@example.com/"},
        {"url": "http://example.com/", "method": "TRACE"},
        {"url": "http://example.com/", "json": {}, "body": "x"},
        {"url": "http://example.com/", "unknown": 1},
    ],
)
async def test_http_request_rejects_bad_params(
    tools: ToolRegistry, ctx: ToolContext, params: dict[str, Any]
) -> None:
    with pytest.raises(InvalidParamsError):
        await call(tools, "http_request", params, ctx)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link_local"),
        ("fe80::1", "link_local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "non_global"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::", "loopback"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_blocked_reason(address: str, reason: str | None) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) == reason

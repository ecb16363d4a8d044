"""cadenza-client against a running gateway (a real HTTP server on the in-process stack):
typed models, problems as typed exceptions, pagination, idempotent submission, async and
sync; and, with a scripted transport, retries with backoff and SSE resume."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from cadenza_client import (
    AsyncCadenza,
    Cadenza,
    Forbidden,
    NotFound,
    RetryPolicy,
    Run,
    ServiceUnavailable,
    Unauthenticated,
    ValidationFailed,
)
from cadenza_gateway import Gateway, GatewaySettings
from cadenza_gateway.auth import Scope
from cadenza_runtime import Resources
from support.auth import issue_key
from support.stacks import stack_resources

pytestmark = pytest.mark.unit
GREET = """\
name: greet
inputs:
  who: {type: string, default: world}
tasks:
  - id: hello
    tool: transform
    with: {greeting: "hello, ${{ inputs.who }}"}
"""
FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05)


@pytest_asyncio.fixture
async def resources(
    tmp_path: Path, unique_id: str, require_services: Callable[..., None]
) -> AsyncIterator[Resources]:
    async with stack_resources("unit", tmp_path, unique_id, require_services) as res:
        yield res


@pytest_asyncio.fixture
async def gateway_url(resources: Resources) -> AsyncIterator[str]:
    gateway = Gateway(resources, GatewaySettings(host="127.0.0.1", port=0, public_url=""))
    await gateway.start()
    try:
        yield f"http://127.0.0.1:{gateway.port}"
    finally:
        await gateway.stop()


async def test_async_client_speaks_the_api_in_typed_models_and_exceptions(
    gateway_url: str, resources: Resources
) -> None:
    key = await issue_key(resources, "acme")
    async with AsyncCadenza(gateway_url, api_key=key) as cadenza:
        workflow = await cadenza.register_workflow(GREET)  # YAML text
        assert (workflow.name, workflow.version) == ("greet", 1)
        first = await cadenza.start_run("greet", {"who": "ada"}, idempotency_key="order-1")
        again = await cadenza.start_run("greet", {"who": "ada"}, idempotency_key="order-1")
        assert isinstance(first, Run)
        assert again.id == first.id  # the same key is the same run
        assert first.inputs == {"who": "ada"}
        assert first.tenant_id == "acme"
        for who in ("bo", "cy"):
            await cadenza.start_run("greet", {"who": who})
        seen = [run.id async for run in cadenza.iter_runs(page_size=1)]  # three pages
        assert len(seen) == len(set(seen)) == 3
        assert first.id in seen

        with pytest.raises(NotFound) as missing:
            await cadenza.get_run("00000000-0000-0000-0000-000000000000")
        assert missing.value.status == 404
        assert missing.value.request_id
        with pytest.raises(ValidationFailed) as invalid:
            await cadenza.start_run("greet", {"who": 5})
        assert any("who" in (e.get("field") or "") for e in invalid.value.errors)

    async with AsyncCadenza(gateway_url, api_key="cdz_000000000000_nope") as stranger:
        with pytest.raises(Unauthenticated):
            await stranger.get_run(first.id)
    reader = await issue_key(resources, "acme", [Scope.RUNS_READ])
    async with AsyncCadenza(gateway_url, api_key=reader) as limited:
        assert (await limited.get_run(first.id)).id == first.id
        with pytest.raises(Forbidden) as refused:
            await limited.cancel_run(first.id)
        assert refused.value.required_scopes == ["runs:write"]


async def test_sync_client_does_the_same(gateway_url: str, resources: Resources) -> None:
    key = await issue_key(resources, "acme")

    def script() -> tuple[str, str, list[str]]:
        with Cadenza(gateway_url, api_key=key) as cadenza:
            cadenza.register_workflow(GREET)
            run = cadenza.start_run("greet", {"who": "sync"})
            fetched = cadenza.get_run(run.id)
            created = cadenza.create_api_key("ci", ["runs:read"])
            listed = [k.id for k in cadenza.list_api_keys()]
            cadenza.revoke_api_key(created.id)
            assert "key=" not in repr(created)  # the secret stays out of reprs
            return fetched.workflow_name, created.id, listed

    name, created_id, listed = await asyncio.to_thread(script)
    assert name == "greet"
    assert created_id in listed


def _scripted(
    replies: list[httpx.Response | Exception],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return httpx.MockTransport(handle), sent


RUN = {
    "id": "r1",
    "tenant_id": "acme",
    "workflow_name": "greet",
    "status": "running",
    "created_at": "2026-12-04T00:00:00Z",
    "updated_at": "2026-12-04T00:00:00Z",
}
BUSY = {"type": "urn:cadenza:problem:store-unavailable", "title": "Unavailable", "status": 503}


async def test_idempotent_calls_are_retried_with_backoff_and_others_are_not() -> None:
    transport, sent = _scripted(
        [
            httpx.ConnectError("refused"),
            httpx.Response(503, json=BUSY, headers={"Retry-After": "0"}),
            httpx.Response(200, json=RUN),
        ]
    )
    async with AsyncCadenza("http://gw.test", api_key="k", retry=FAST, transport=transport) as c:
        assert (await c.get_run("r1")).status == "running"
    assert len(sent) == 3
    assert sent[0].headers["authorization"] == "Bearer k"

    transport, sent = _scripted([httpx.Response(503, json=BUSY)] * 4)
    async with AsyncCadenza("http://gw.test", retry=FAST, transport=transport) as c:
        with pytest.raises(ServiceUnavailable):
            await c.start_run("greet")  # a POST without an idempotency key: sent once
        assert len(sent) == 1
        with pytest.raises(ServiceUnavailable):
            await c.start_run("greet", idempotency_key="k1")  # with one: retried
    assert len(sent) == 1 + FAST.max_attempts


class _DroppingStream(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes], drop: bool) -> None:
        self.chunks, self.drop = chunks, drop

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.drop:
            raise httpx.ReadError("connection reset mid-stream")


def _sse(event_id: int, kind: str, **data: object) -> bytes:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()


async def test_event_stream_resumes_after_the_last_event_seen() -> None:
    resumed_from: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        last = request.headers["last-event-id"]
        resumed_from.append(last)
        if last == "0":
            chunks = [b": heartbeat\n\n", _sse(1, "run.started"), _sse(2, "task.started")]
            stream = _DroppingStream(chunks, drop=True)
        else:
            chunks = [_sse(3, "task.succeeded"), _sse(4, "run.succeeded", status="succeeded")]
            stream = _DroppingStream(chunks, drop=False)
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, stream=stream)

    transport = httpx.MockTransport(handle)
    async with AsyncCadenza("http://gw.test", transport=transport) as cadenza:
        events = [e async for e in cadenza.events("r1")]
    assert [(e.id, e.event) for e in events] == [
        (1, "run.started"),
        (2, "task.started"),
        (3, "task.succeeded"),
        (4, "run.succeeded"),
    ]
    assert resumed_from == ["0", "2"]
    assert events[-1].terminal
    assert events[-1].data == {"status": "succeeded"}


def test_sync_event_stream_parses_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b": ping\n\n" + _sse(7, "run.failed", status="failed")

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["last-event-id"] == "6"
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=body)

    with Cadenza("http://gw.test", transport=httpx.MockTransport(handle)) as cadenza:
        events: Iterator[object] = cadenza.events("r1", after=6)
        assert [(e.id, e.event) for e in events] == [(7, "run.failed")]  # type: ignore[attr-defined]

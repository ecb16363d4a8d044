"""The embedded HTTP server every service uses (the gateway's API, rag-ingest's search)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from cadenza_runtime.http_server import HttpServer

pytestmark = pytest.mark.unit


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body[::-1]})


async def test_requests_are_parsed_by_httptools_not_h11() -> None:
    """uvicorn falls back to h11's pure-Python parser when httptools is missing, silently;
    h11 doubled the server's CPU per request (`bench/http_parser.py`, docs/benchmarks.md)."""
    server = HttpServer(_echo, "127.0.0.1", 0, name="test")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            answer = await client.post("/x", content=b"abc" * 10_000)
            assert answer.status_code == 200
            assert answer.content == (b"abc" * 10_000)[::-1]
            protocols = {type(c).__name__ for c in server._server.server_state.connections}
        assert protocols == {"HttpToolsProtocol"}
    finally:
        await server.stop()

"""HTTP parser benchmark: the server CPU one request costs, h11 against httptools.

    uv run python bench/http_parser.py [--requests 4000] [--rounds 3]

Every service serves HTTP through ``cadenza_runtime.HttpServer`` (uvicorn). uvicorn parses
requests with httptools when it is installed and falls back to h11, pure Python, silently
when it is not; ``HttpServer`` asks for httptools explicitly. This script serves a bare ASGI
app (it reads the body and answers 201 with a small JSON body, as ``POST /v1/runs`` does)
from a uvicorn subprocess on uvloop, sends ``--requests`` POSTs with a JSON body and a
~300-byte bearer token, ten at a time on keep-alive connections, and reads the server
process's CPU from ``/proc``. Rounds alternate the parsers; h11 is the baseline.
The LAST line printed is the JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.cluster import free_port

SERVER = r"""
import sys
import uvicorn

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    headers = [(b"content-type", b"application/json"), (b"location", b"/v1/runs/x")]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"id":"x","status":"pending"}' * 10})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), http=sys.argv[1], loop="uvloop",
            log_config=None, access_log=False)
"""

BODY = {
    "spec": {
        "name": "load",
        "tasks": [{"id": "each", "kind": "tool", "tool": "noop", "for_each": "list(range(10))"}],
    },
    "inputs": {},
}
HEADERS = {"authorization": "Bearer " + "x" * 300, "idempotency-key": "bench-http-parser"}


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def server_cpu_us_per_request(parser: str, requests: int) -> float:
    port = free_port()
    server = await asyncio.create_subprocess_exec(sys.executable, "-c", SERVER, parser, str(port))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(200):  # until it listens
                try:
                    await client.get("/")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            for _ in range(200):  # warm-up
                await client.post("/v1/runs", json=BODY, headers=HEADERS)
            before = cpu_s(server.pid)
            for _ in range(requests // 10):
                answers = await asyncio.gather(
                    *(client.post("/v1/runs", json=BODY, headers=HEADERS) for _ in range(10))
                )
                assert all(a.status_code == 201 for a in answers)
            return (cpu_s(server.pid) - before) / (requests // 10 * 10) * 1e6
    finally:
        server.terminate()
        await server.wait()


async def main(args: argparse.Namespace) -> dict[str, object]:
    runs: dict[str, list[float]] = {"h11": [], "httptools": []}
    for _ in range(args.rounds):
        for parser in runs:
            runs[parser].append(round(await server_cpu_us_per_request(parser, args.requests), 1))
            print(f"{parser}: {runs[parser][-1]} µs", file=sys.stderr)
    h11, tools = statistics.median(runs["h11"]), statistics.median(runs["httptools"])
    return {
        "requests": args.requests,
        "server_cpu_us_per_request_h11": runs["h11"],
        "server_cpu_us_per_request_httptools": runs["httptools"],
        "ratio_httptools_vs_h11": round(tools / h11, 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))

"""Shared fixtures: real-service availability and per-test isolation.

Integration tests call ``require_services("kafka", "postgres", ...)``. When a service is
not reachable the session runs ``cadenza infra up`` once; if it is still missing the
test FAILS under ``CI=true`` and skips elsewhere (a developer without infra).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from support import service_missing

if TYPE_CHECKING:
    from cadenza_llm.llama_server import LlamaServer

# Prints the awaiting asyncio tasks of a test about to hit pytest-timeout.
pytest_plugins = ["support.hang_report"]

# Addresses the project's own infra listens on (see `cadenza infra status`).
SERVICE_ADDRESSES: dict[str, tuple[str, int]] = {
    "kafka": ("127.0.0.1", int(os.environ.get("CADENZA_INFRA_KAFKA_PORT", "19092"))),
    "postgres": ("127.0.0.1", int(os.environ.get("CADENZA_INFRA_POSTGRES_PORT", "15432"))),
    "redis": ("127.0.0.1", int(os.environ.get("CADENZA_INFRA_REDIS_PORT", "16379"))),
    "minio": ("127.0.0.1", int(os.environ.get("CADENZA_INFRA_MINIO_PORT", "19000"))),
}

_infra_up_attempted = False


def _reachable(name: str) -> bool:
    host, port = SERVICE_ADDRESSES[name]
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _infra_up() -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "cadenza_cli", "infra", "up"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return proc.stdout[-2000:] + proc.stderr[-4000:]


@pytest.fixture(scope="session")
def require_services() -> Callable[..., None]:
    """Return a function that makes sure the named real services are reachable."""

    def ensure(*names: str) -> None:
        global _infra_up_attempted
        missing = [n for n in names if not _reachable(n)]
        if missing and not _infra_up_attempted:
            _infra_up_attempted = True
            _infra_up()
            missing = [n for n in names if not _reachable(n)]
        if missing:
            service_missing(
                f"services not reachable: {', '.join(missing)} (run `cadenza infra up`)"
            )

    return ensure


@pytest.fixture
def unique_id() -> str:
    """A short id unique to this test, for topic prefixes, schemas, key prefixes, buckets."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """llama.cpp's HTTP server over the embedded model (support/llama.py), one per session;
    fails under CI=true when it cannot start."""
    from support.llama import start_llama_server

    server = start_llama_server()
    yield server
    server.stop()

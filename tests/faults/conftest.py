"""Fault drills: every run finishes, each effect once, while the infrastructure misbehaves.

Restart drills use PRIVATE instances (tests/support/infra.py) — the shared Kafka,
PostgreSQL and Redis serve other test runs and are never stopped. A private instance that
cannot be started fails the test under ``CI=true`` and skips it elsewhere, like
``require_services``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from support import service_missing
from support.infra import InfraUnavailable, PrivateService


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


def _private(name: str) -> Iterator[PrivateService]:
    service = PrivateService.create(name)
    try:
        service.up()
    except (InfraUnavailable, subprocess.TimeoutExpired) as exc:
        service.remove()
        service_missing(f"could not start a private {name}: {exc}")
    try:
        yield service
    finally:
        service.remove()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivateService]:
    """A PostgreSQL of this module's own, which a drill may stop and start."""
    yield from _private("postgres")


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateService]:
    yield from _private("redis")


@pytest.fixture(scope="module")
def private_kafka() -> Iterator[PrivateService]:
    yield from _private("kafka")


@pytest.fixture(scope="module")
def private_minio() -> Iterator[PrivateService]:
    yield from _private("minio")

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from cadenza_client import AsyncCadenza
from cadenza_events import BusSettings
from cadenza_events.kafka import KafkaBus
from cadenza_state import StateSettings, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine
from support.cleanup import drop_schema
from support.cluster import Cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def cluster_env() -> dict[str, str]:
    """The deployment's settings beyond the defaults; a test module overrides this fixture
    to change them (e.g. the LLM answering from a cassette)."""
    return {}


@pytest.fixture
async def cluster(
    unique_id: str,
    tmp_path: Path,
    require_services: Callable[..., None],
    cluster_env: dict[str, str],
) -> AsyncIterator[Cluster]:
    """Gateway + orchestrator + one worker, each its own OS process, on real infra."""
    require_services("kafka", "postgres", "redis", "minio")
    deployment = Cluster(namespace=unique_id, log_dir=tmp_path, env_overrides=cluster_env)
    try:
        deployment.start_gateway()  # first: it migrates the fresh schema
        deployment.start_orchestrator()
        deployment.start_worker()
        yield deployment
    finally:
        deployment.stop()
        print(deployment.logs())
        # Only now that every process is gone: drop the schema and the topics.
        await drop_schema(StateSettings(database_schema=unique_id))
        await KafkaBus(BusSettings(topic_prefix=f"{unique_id}.")).delete_topics()


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        yield client


@pytest.fixture
async def cadenza(cluster: Cluster) -> AsyncIterator[AsyncCadenza]:
    """The typed client (as the CLI uses it) of the deployment's gateway (anonymous)."""
    async with AsyncCadenza(cluster.url, api_key="", timeout=30) as client:
        yield client


@pytest.fixture
async def db(cluster: Cluster) -> AsyncIterator[AsyncEngine]:
    """Direct read access to the deployment's schema, to check effects exactly once."""
    engine = create_engine(StateSettings(database_schema=cluster.namespace))
    yield engine
    await engine.dispose()


@pytest.fixture
async def kafka(cluster: Cluster) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(
        BusSettings(topic_prefix=f"{cluster.namespace}.", partitions=3, commit_interval_s=0.05)
    )
    await bus.start()
    yield bus
    await bus.stop()

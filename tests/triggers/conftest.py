"""Trigger fixtures: resources on both stacks (see support.stacks), a registered workflow."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from cadenza_runtime import Resources
from support.stacks import mark_by_stack, stack_resources

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_by_stack(items, HERE)


@pytest.fixture(params=["unit", "integration"])
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def resources(
    stack: str, tmp_path: Path, unique_id: str, require_services: Callable[..., None]
) -> AsyncIterator[Resources]:
    async with stack_resources(stack, tmp_path, unique_id, require_services) as res:
        yield res

"""Test helpers shared by every suite."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import pytest


async def assert_eventually(
    check: Callable[[], Any | Awaitable[Any]],
    timeout: float = 15.0,
    interval: float = 0.02,
    message: str = "condition never became true",
) -> Any:
    """Poll ``check`` until it returns a truthy value (or stops raising AssertionError)."""
    deadline = time.monotonic() + timeout
    last_error: AssertionError | None = None
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
                result = await result
            if result:
                return result
        except AssertionError as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout}s") from last_error
        await asyncio.sleep(interval)


def service_missing(message: str) -> NoReturn:
    """A test needs a service that is not there: it FAILS under ``CI=true`` (CI must run
    everything) and skips elsewhere (a developer without the infra)."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)

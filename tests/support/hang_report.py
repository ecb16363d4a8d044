"""A pytest plugin: when a test is about to hit pytest-timeout, print what every running
asyncio task is waiting on.

pytest-timeout dumps the threads' stacks, and an async test that hangs shows only its
event loop idling in ``select``; the coroutine that waits for ever is in no thread's stack.
This watchdog thread prints each task of every running loop (with its await stack) a few
seconds before the timeout fires, so a hang that happens once in a thousand runs in CI
leaves the line that waited in the log.
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
import time
from collections.abc import Iterator

import pytest

_MARGIN_S = 8.0
"""How long before pytest-timeout's deadline the tasks are printed."""

_current: dict[str, float | str | None] = {"deadline": None, "test": None}


def _running_loops() -> list[asyncio.AbstractEventLoop]:
    return [o for o in gc.get_objects() if isinstance(o, asyncio.BaseEventLoop) and o.is_running()]


def report(title: str | None = None) -> str:
    """Every task of every running event loop, with the line each one waits on."""
    out = io.StringIO()
    title = title or f"asyncio tasks of {_current['test']} (about to time out)"
    print(f"\n+++++ {title} +++++", file=out)
    for loop in _running_loops():
        try:
            tasks = list(asyncio.all_tasks(loop))
        except RuntimeError:  # the set changed while we copied it: try once more
            tasks = list(asyncio.all_tasks(loop))
        for task in tasks:
            print(f"--- {task!r}", file=out)
            task.print_stack(file=out)
    return out.getvalue()


def _watch() -> None:
    while True:
        time.sleep(1.0)
        deadline = _current["deadline"]
        if isinstance(deadline, float) and time.monotonic() >= deadline:
            _current["deadline"] = None  # once per test
            stream = sys.__stderr__ or sys.stderr
            try:
                stream.write(report())
                stream.flush()
            except Exception as exc:  # a diagnostic must never break the run
                stream.write(f"hang report failed: {exc!r}\n")


def _timeout_of(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    value = item.config.getoption("timeout", None) or item.config.getini("timeout")
    return float(value) if value else None


_watcher = threading.Thread(target=_watch, name="hang-report", daemon=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    timeout = _timeout_of(item)
    if timeout and timeout > _MARGIN_S:
        if not _watcher.is_alive():
            _watcher.start()
        _current["test"] = item.nodeid
        _current["deadline"] = time.monotonic() + timeout - _MARGIN_S
    yield
    _current["deadline"] = None

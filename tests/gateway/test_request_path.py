"""What a request costs the gateway beyond its own work: no thread-pool hop on the way in.

FastAPI runs a plain ``def`` dependency in its thread pool. Under the benchmark's load
(50 run submissions a second) that hop — a queue hand-over and the GIL passed back and
forth — cost more of the gateway's CPU than the database insert of the run.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from cadenza_gateway import documents
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)

ALLOWED_IN_THREAD = {"get_searcher"}
"""Opens the vector store (and may load the embedding model) on first use: slow, blocking,
and only on the search routes."""


def _runs_on_the_loop(call: Any) -> bool:
    if inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call):
        return True
    dunder = getattr(call, "__call__", None)  # noqa: B004 — instances like HTTPBearer
    return not inspect.isfunction(call) and inspect.iscoroutinefunction(dunder)


def _dependencies(dependant: Dependant) -> list[Dependant]:
    found = []
    for sub in dependant.dependencies:
        found.append(sub)
        found.extend(_dependencies(sub))
    return found


@unit_only
def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every API route, also inside included routers (FastAPI keeps those as wrappers of
    the original router)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


@unit_only
def test_no_dependency_of_any_route_runs_in_the_thread_pool(app: FastAPI) -> None:
    routes = list(_api_routes(app.routes))
    assert any(route.path == "/v1/runs" and "POST" in route.methods for route in routes)
    threaded = {
        f"{sorted(route.methods)} {route.path}: {getattr(dep.call, '__name__', dep.call)}"
        for route in routes
        for dep in _dependencies(route.dependant)
        if dep.call is not None
        and not _runs_on_the_loop(dep.call)
        and getattr(dep.call, "__name__", "") not in ALLOWED_IN_THREAD
    }
    assert not threaded, sorted(threaded)
    # The check sees a plain function when there is one (else it proves nothing).
    assert not _runs_on_the_loop(documents.nesting_depth)


async def test_a_small_workflow_is_parsed_on_the_loop_and_a_large_one_in_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hops: list[int] = []

    async def counting(func: Any, *args: Any) -> Any:
        hops.append(1)
        return func(*args)

    monkeypatch.setattr(documents, "run_in_threadpool", counting)
    small = b"name: small\ntasks:\n  - id: a\n    tool: noop\n"
    spec, _ = await documents.load_workflow_spec(small, "yaml")
    assert spec.name == "small"
    assert hops == []
    padding = "# " + "x" * documents.INLINE_PARSE_BYTES + "\n"
    spec, _ = await documents.load_workflow_spec((padding + small.decode()).encode(), "yaml")
    assert spec.name == "small"
    assert hops == [1]
    spec, _ = await documents.load_workflow_spec(
        {"name": "as-dict", "tasks": [{"id": "a", "tool": "noop"}]}
    )
    assert spec.name == "as-dict"
    assert hops == [1]

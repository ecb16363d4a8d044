"""Service processes run on uvloop unless CADENZA_EVENT_LOOP=asyncio; labelled metrics."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from cadenza_runtime import event_loop_choice, labelled, run_service
from prometheus_client import CollectorRegistry, Counter

pytestmark = pytest.mark.unit


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_a_service_runs_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CADENZA_EVENT_LOOP", raising=False)
    assert issubclass(run_service(_loop_type()), uvloop.Loop)


def test_the_standard_loop_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENZA_EVENT_LOOP", "asyncio")
    loop_type = run_service(_loop_type())
    assert not issubclass(loop_type, uvloop.Loop)
    assert issubclass(loop_type, asyncio.AbstractEventLoop)


def test_an_unknown_loop_is_refused_by_name() -> None:
    assert event_loop_choice({"CADENZA_EVENT_LOOP": " UVLoop "}) == "uvloop"
    assert event_loop_choice({}) == "uvloop"
    with pytest.raises(SystemExit, match="CADENZA_EVENT_LOOP"):
        event_loop_choice({"CADENZA_EVENT_LOOP": "trio"})


def test_labelled_returns_the_metrics_own_child_once_looked_up() -> None:
    counter = Counter("cadenza_test_labelled", "test", ["kind"], registry=CollectorRegistry())
    child = labelled(counter, "tool")
    assert child is counter.labels("tool")
    assert labelled(counter, "tool") is child
    labelled(counter, "tool").inc(2)
    labelled(counter, "agent").inc()
    assert counter.labels("tool")._value.get() == 2
    assert counter.labels("agent")._value.get() == 1

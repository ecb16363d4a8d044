"""``labelled(metric, *values)``: a metric's child for these label values, looked up once.

prometheus-client's ``labels()`` validates the values, takes the metric's lock and builds
a tuple key on every call — a few microseconds each, and the worker's hot path made seven
such calls per no-op task. The children are kept here by (metric, values); label values
are bounded sets (kinds, tool names, statuses, error codes), so this stays small."""

from __future__ import annotations

from typing import Any, TypeVar

M = TypeVar("M")

_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def labelled(metric: M, *values: str) -> M:
    """What ``metric.labels(*values)`` returns, cached (``metric`` lives as long as the
    process: module-level metrics)."""
    key = (id(metric), values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)  # type: ignore[attr-defined]
    return child

from __future__ import annotations

import pytest
from cadenza_events.offsets import OffsetTracker

pytestmark = pytest.mark.unit
TP = ("t", 0)


def test_commit_never_passes_an_in_flight_offset() -> None:
    tracker = OffsetTracker()
    for offset in (0, 1, 2, 3):
        tracker.begin(TP, offset)
    tracker.finish(TP, 1)
    tracker.finish(TP, 3)
    assert tracker.committable() == {TP: 0}  # 0 still running: nothing past it is safe
    tracker.finish(TP, 0)
    assert tracker.committable() == {TP: 2}
    tracker.mark_committed({TP: 2})
    assert tracker.committable() == {}  # unchanged position is not re-committed
    tracker.finish(TP, 2)
    assert tracker.committable() == {TP: 4}


def test_revoked_partitions_are_forgotten() -> None:
    tracker = OffsetTracker()
    tracker.begin(TP, 5)
    tracker.drop({TP})
    tracker.finish(TP, 5)  # a late finish for a revoked partition is ignored
    assert tracker.committable() == {}


def test_only_filters_partitions() -> None:
    tracker = OffsetTracker()
    tracker.begin(("a", 0), 0)
    tracker.begin(("b", 0), 0)
    tracker.finish(("a", 0), 0)
    tracker.finish(("b", 0), 0)
    assert tracker.committable(only={("a", 0)}) == {("a", 0): 1}

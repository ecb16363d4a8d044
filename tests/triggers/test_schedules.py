"""Next fire times and the catch-up computation (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cadenza_triggers import ScheduleSpec, due_ticks, next_fire, upcoming

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
GRACE = timedelta(seconds=2)


def spec(**fields: Any) -> ScheduleSpec:
    return ScheduleSpec.model_validate(
        {"name": "s", "cron": "* * * * *", "workflow": "w", **fields}
    )


def test_next_fire_in_a_time_zone_across_daylight_saving() -> None:
    paris = spec(cron="30 2 * * *", timezone="Europe/Paris")
    # 29 March 2026: clocks go from 02:00 to 03:00 in Paris; 02:30 does not exist that day.
    ticks = upcoming(paris, datetime(2026, 3, 27, 12, tzinfo=UTC), 3)
    assert ticks[0] == datetime(2026, 3, 28, 1, 30, tzinfo=UTC)  # CET: UTC+1
    assert ticks[-1] == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # CEST: UTC+2


def test_start_and_end_bound_the_ticks() -> None:
    windowed = spec(start_at="2026-03-01T13:00:00Z", end_at="2026-03-01T13:02:00Z")
    assert upcoming(windowed, NOW, 10) == [
        datetime(2026, 3, 1, 13, m, tzinfo=UTC) for m in (0, 1, 2)
    ]
    assert next_fire(windowed, datetime(2026, 3, 1, 13, 2, tzinfo=UTC)) is None


def test_an_on_time_tick_fires_under_every_policy() -> None:
    for policy in ("none", "last", "all"):
        late = NOW + timedelta(seconds=1)  # the scheduler polls a little after the tick
        fire, skipped, following = due_ticks(spec(catch_up=policy), NOW, late, GRACE)
        assert (fire, skipped) == ([NOW], 0)
        assert following == NOW + timedelta(minutes=1)


def test_catch_up_after_downtime() -> None:
    first_missed = NOW - timedelta(minutes=10)  # 10 ticks missed, none on time (:01…:10 ago)
    missed = [first_missed + timedelta(minutes=i) for i in range(10)]
    fire, skipped, following = due_ticks(
        spec(catch_up="none"), first_missed, NOW + GRACE * 2, GRACE
    )
    # NOW itself is a tick, but GRACE*2 late: missed too.
    assert (fire, skipped) == ([], 11)
    assert following == NOW + timedelta(minutes=1)
    fire, skipped, _ = due_ticks(spec(catch_up="last"), first_missed, NOW + GRACE * 2, GRACE)
    assert (fire, skipped) == ([NOW], 10)
    fire, skipped, _ = due_ticks(
        spec(catch_up="all", catch_up_max=4), first_missed, NOW + GRACE * 2, GRACE
    )
    assert fire == [*missed[-3:], NOW]
    assert skipped == 7
    # With the current tick on time, "last" fires only it (it is the most recent).
    fire, skipped, _ = due_ticks(spec(catch_up="last"), first_missed, NOW, GRACE)
    assert (fire, skipped) == ([NOW], 10)


def test_a_year_of_downtime_costs_a_bounded_walk() -> None:
    every_second = spec(cron="* * * * * *", catch_up="all", catch_up_max=5)
    start = NOW - timedelta(days=1)
    fire, skipped, following = due_ticks(every_second, start, NOW, timedelta(0))
    assert len(fire) == 6  # 5 missed + the tick at NOW (on time with zero grace)
    assert fire[-1] == NOW
    assert following == NOW + timedelta(seconds=1)
    assert skipped == 86_400 + 1 - 6

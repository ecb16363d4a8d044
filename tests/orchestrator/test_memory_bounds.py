"""``RunMemory``'s bookkeeping, in process: rows counted as runs enter, grow and leave;
least recently used out past ``max_rows``; ``waiting`` kept as rows change."""

from __future__ import annotations

import pytest
from cadenza_orchestrator.memory import RunMemory, RunState, counts
from cadenza_orchestrator.rows import RunRow, TaskRow

pytestmark = pytest.mark.unit


def state(run_id: str, *statuses: str) -> RunState:
    rows = {
        f"{run_id}.t{i}": TaskRow(f"{run_id}.t{i}", run_id, f"t{i}", None, status, 1, 3)
        for i, status in enumerate(statuses)
    }
    return RunState(RunRow(run_id, "acme", "wf", "running"), rows)


def test_least_recently_used_runs_leave_past_the_bound() -> None:
    memory = RunMemory(max_rows=5)
    memory.put(state("r1", "ready", "pending"))
    memory.put(state("r2", "ready", "pending"))
    assert memory.get("r1") is not None  # r1 used last: r2 is the oldest now
    memory.put(state("r3", "ready", "pending"))
    assert (memory.rows, len(memory)) == (4, 2)
    assert memory.get("r2") is None
    assert memory.get("r1") is not None
    assert memory.get("r3") is not None


def test_a_run_larger_than_the_bound_is_not_held() -> None:
    memory = RunMemory(max_rows=2)
    memory.put(state("big", "ready", "ready", "ready"))
    assert (memory.rows, len(memory), memory.get("big")) == (0, 0, None)
    assert RunMemory(max_rows=0).rows == 0


def test_absorbing_rows_counts_them_and_keeps_waiting() -> None:
    memory = RunMemory(max_rows=10)
    held = state("r1", "running", "pending")
    memory.put(held)
    assert held.waiting == {"r1.t0", "r1.t1"}
    done, nxt = held.rows["r1.t0"], held.rows["r1.t1"]
    done.status, nxt.status = "succeeded", "ready"
    new = TaskRow("r1.t2", "r1", "t2", None, "pending", 0, 3)
    memory.absorb(held, [done, nxt, new], [("r1.t0", 1), ("elsewhere.t0", 1)])
    assert memory.rows == 3
    assert held.waiting == {"r1.t1", "r1.t2"}
    assert held.attempts == {("r1.t0", 1)}  # only the run's own
    assert counts(held.rows.values()) == (3, 1)
    memory.forget(["r1", "unknown"])
    assert (memory.rows, len(memory)) == (0, 0)


def test_growing_past_the_bound_lets_older_runs_go() -> None:
    memory = RunMemory(max_rows=4)
    memory.put(state("old", "ready", "ready"))
    young = state("young", "ready")
    memory.put(young)
    memory.absorb(
        young, [TaskRow(f"young.n{i}", "young", "n", i, "ready", 1, 3) for i in range(2)], []
    )
    assert memory.get("old") is None
    assert (memory.rows, len(memory)) == (3, 1)


def test_no_more_runs_than_the_graph_cache_holds() -> None:
    memory = RunMemory(max_rows=100, max_runs=2)
    for run_id in ("r1", "r2", "r3"):
        memory.put(state(run_id, "ready"))
    assert memory.get("r1") is None
    assert (memory.rows, len(memory)) == (2, 2)


def test_a_held_run_lets_its_spec_go() -> None:
    """Only the graph needs the spec, and the graph cache holds it."""
    held = state("r1", "ready")
    held.run.spec, held.run.inputs, held.run.replay = {"tasks": []}, {"n": 1}, {}
    RunMemory(max_rows=10).put(held)
    assert (held.run.spec, held.run.inputs, held.run.replay) == (None, None, None)


def test_a_rebuilt_run_fills_only_the_room_left() -> None:
    """``fill`` (a run read whole from the database) never pushes a held run out; one that
    does not fit is remembered as too big and not read whole again."""
    memory = RunMemory(max_rows=5)
    memory.put(state("busy", "ready", "pending", "pending"))
    assert memory.may_fill("moved")
    assert memory.fill(state("moved", "ready", "pending"))
    assert (memory.rows, len(memory)) == (5, 2)
    assert not memory.fill(state("big", "ready"))  # 1 row, but no room left
    assert memory.get("busy") is not None
    assert memory.get("moved") is not None
    assert memory.get("big") is None
    memory.forget(["busy"])
    assert not memory.may_fill("big")  # too big once: read in part from now on
    assert memory.may_fill("other")
    memory.clear()  # a rebalance: nothing held, nothing remembered
    assert (memory.rows, len(memory)) == (0, 0)
    assert memory.may_fill("big")


def test_no_run_is_filled_past_the_run_bound_or_with_memory_off() -> None:
    memory = RunMemory(max_rows=100, max_runs=1)
    assert memory.fill(state("r1", "ready"))
    assert not memory.may_fill("r2")
    assert not memory.fill(state("r2", "ready"))
    assert memory.get("r1") is not None
    assert not RunMemory(max_rows=0).may_fill("r1")


def test_a_rebalance_forgets_only_the_runs_whose_partition_is_not_held() -> None:
    """``keep_where``: a run whose partition went elsewhere (False) or is not known (None)
    is forgotten, and its rows uncounted; the others stay."""
    memory = RunMemory(max_rows=100)
    held = {"stays": True, "went": False, "unknown": None}
    for run_id in held:
        memory.put(state(run_id, "ready", "pending"))
    assert memory.keep_where(held.__getitem__) == 2
    assert (len(memory), memory.rows) == (1, 2)
    assert memory.get("stays") is not None
    assert all(memory.get(r) is None for r in ("went", "unknown"))

"""``writes.encode_in_slices``: a batch's outbox rows are encoded and handed to the early
dispatch a slice at a time, the event loop let run in between, so a big plan's first
task.ready reach the producer while the rest of its thousands are still encoded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from cadenza_events import Envelope, TaskReady, Topic, TopicRegistry
from cadenza_orchestrator.writes import EARLY_SLICE, encode_in_slices
from cadenza_runtime.staging import OutboxRow, encode_outbox

pytestmark = pytest.mark.unit

REGISTRY = TopicRegistry(prefix="t.")


def staged(n: int) -> list[tuple[Topic, Envelope[Any]]]:
    return [
        (
            Topic.TASK_READY,
            Envelope(
                payload=TaskReady(
                    run_id="r", task_id=f"r.each.{i}", node_id="each", name="noop", params={}
                ),
                source="/tests",
                plan_id="r",
                task_id=f"r.each.{i}",
                attempt=1,
            ),
        )
        for i in range(n)
    ]


async def test_slices_are_handed_over_with_the_loop_let_run_between() -> None:
    items = staged(2 * EARLY_SLICE + 7)
    turns = 0  # event-loop turns a task beside the encoding got

    async def beside() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    handed: list[tuple[int, int]] = []

    def encoded(rows: Sequence[OutboxRow]) -> None:
        handed.append((len(rows), turns))

    spinner = asyncio.create_task(beside())
    await asyncio.sleep(0)
    try:
        rows = await encode_in_slices(REGISTRY, items, encoded)
    finally:
        spinner.cancel()
    assert [n for n, _ in handed] == [EARLY_SLICE, EARLY_SLICE, 7]
    seen = [t for _, t in handed]
    assert seen[0] < seen[1] < seen[2], seen  # the loop ran between two slices
    # The same rows, in the same order, as encoding them all at once.
    whole = encode_outbox(REGISTRY, items)
    assert [(t, k, p) for t, k, _, p in rows] == [(t, k, p) for t, k, _, p in whole]
    assert dict(rows[0][2])["ce_type"] == b"cadenza.task.ready.v1"


async def test_a_small_batch_is_one_slice_and_nothing_is_handed_for_none() -> None:
    handed: list[int] = []
    rows = await encode_in_slices(REGISTRY, staged(3), lambda r: handed.append(len(r)))
    assert handed == [3]
    assert len(rows) == 3
    assert await encode_in_slices(REGISTRY, [], lambda r: handed.append(len(r))) == []
    assert handed == [3]

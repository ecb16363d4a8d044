"""Which offsets may be committed: per partition, never past a message still in flight.

Handlers run concurrently, so offsets finish out of order; the committable position of a
partition is its lowest in-flight offset (or one past the highest seen when none is).
"""

from __future__ import annotations

TopicPartition = tuple[str, int]


class OffsetTracker:
    def __init__(self) -> None:
        self._inflight: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def begin(self, tp: TopicPartition, offset: int) -> None:
        self._inflight.setdefault(tp, set()).add(offset)
        if offset + 1 > self._next.get(tp, 0):
            self._next[tp] = offset + 1

    def finish(self, tp: TopicPartition, offset: int) -> None:
        pending = self._inflight.get(tp)
        if pending is not None:  # unknown partition: revoked meanwhile, ignore
            pending.discard(offset)

    def committable(self, only: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Positions that moved since the last commit (the next offset to read, Kafka-style)."""
        out: dict[TopicPartition, int] = {}
        for tp, pending in self._inflight.items():
            if only is not None and tp not in only:
                continue
            position = min(pending) if pending else self._next[tp]
            if position > self._committed.get(tp, -1):
                out[tp] = position
        return out

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, position in offsets.items():
            if tp in self._inflight:
                self._committed[tp] = position

    def drop(self, tps: set[TopicPartition]) -> None:
        """Forget partitions this consumer no longer owns."""
        for tp in tps:
            self._inflight.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)

    def committed(self) -> dict[TopicPartition, int]:
        return dict(self._committed)

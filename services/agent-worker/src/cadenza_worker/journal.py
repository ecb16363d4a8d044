"""The effect journal: a tool call with side effects happens once per (task, call index).

The result is written in its own small transaction right after the call; a re-dispatched
task (its worker crashed after the call) finds the record and replays it instead of calling
the tool again. Effects are keyed by (task_id, call_index) — `attempt` is stored as 0 — so
the record survives re-dispatches, which bump the attempt (docs/execution.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cadenza_runtime import is_outage
from cadenza_state import ToolEffectRecord
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .errors import InvalidOutputError, JournalUnavailable

log = logging.getLogger("cadenza.worker.journal")

JOURNAL_ATTEMPT = 0


@dataclass(frozen=True)
class Recorded:
    """A journal entry that exists: ``result`` may legitimately be None."""

    result: Any


class EffectJournal:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def lookup(self, task_id: str, call_index: int) -> Recorded | None:
        try:
            async with self._sessions() as session:
                row = await session.get(ToolEffectRecord, (task_id, JOURNAL_ATTEMPT, call_index))
                return None if row is None else Recorded(row.result)
        except Exception as exc:
            if is_outage(exc):
                raise JournalUnavailable(f"effect journal unreachable: {exc}") from exc
            raise

    async def record(self, task_id: str, call_index: int, tool: str, result: Any) -> Any:
        """Store ``result``; if another executor recorded this call first, its result wins
        (and is returned) so every reader sees one outcome."""
        ensure_json(result, tool)
        try:
            async with self._sessions() as session, session.begin():
                session.add(
                    ToolEffectRecord(
                        task_id=task_id,
                        attempt=JOURNAL_ATTEMPT,
                        call_index=call_index,
                        tool=tool,
                        result=result,
                    )
                )
        except Exception as exc:
            if is_outage(exc):
                # The call happened but could not be recorded: an effect in doubt. The
                # message waits for the database; its re-run finds no record and calls again.
                log.error("effect %s#%d made but not recorded: %s", task_id, call_index, exc)
                raise JournalUnavailable(f"effect journal unreachable: {exc}") from exc
            if not isinstance(exc, IntegrityError):
                raise
            existing = await self.lookup(task_id, call_index)
            if existing is None:  # the conflict was something else (e.g. no such task row)
                raise
            log.info(
                "effect %s#%d was recorded concurrently; keeping the first", task_id, call_index
            )
            return existing.result
        return result

    async def run(
        self, task_id: str, call_index: int, tool: str, call: Callable[[], Awaitable[Any]]
    ) -> tuple[Any, bool]:
        """Replay the recorded result of this call, or make the call and record it.
        Returns (result, replayed)."""
        existing = await self.lookup(task_id, call_index)
        if existing is not None:
            return existing.result, True
        result = await call()
        return await self.record(task_id, call_index, tool, result), False


def ensure_json(value: Any, tool: str) -> str:
    """The compact JSON of ``value``; a tool returning anything else fails the task."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidOutputError(f"{tool}: output is not JSON: {exc}") from exc

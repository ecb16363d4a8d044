"""The effect journal: a tool call with side effects happens once per (task, call index).

The result is written in its own small transaction right after the call; a re-dispatched
task (its worker crashed after the call) finds the record and replays it instead of calling
the tool again. Effects are keyed by (task_id, call_index) — `attempt` is stored as 0 — so
the record survives re-dispatches, which bump the attempt (docs/execution.md).

A call that is not idempotent (``tools.is_idempotent``) is journaled ``sent`` BEFORE it is
made and ``done`` after (:meth:`EffectJournal.run_once`). Finding ``sent`` later means a
worker died between sending and recording: the effect is in doubt, and the call is not made
again until a person says it did not happen (``retry``) or gives its result (``done``) —
answers older than the ``sent`` row do not count, so a retried call that dies again is held
again (docs/guardrails.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cadenza_runtime import is_outage
from cadenza_state import EFFECT_DONE, EFFECT_SENT, HoldKind, HoldStatus, ToolEffectRecord
from sqlalchemy import delete, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import metrics
from .errors import InvalidOutputError, JournalUnavailable
from .holds import HoldDecisions, HoldRequested, hold

log = logging.getLogger("cadenza.worker.journal")

JOURNAL_ATTEMPT = 0


@dataclass(frozen=True)
class Recorded:
    """A journal entry that exists: ``result`` may legitimately be None."""

    result: Any
    status: str = EFFECT_DONE
    created_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status == EFFECT_DONE


class EffectJournal:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.decisions = HoldDecisions(sessions)

    async def lookup(self, task_id: str, call_index: int) -> Recorded | None:
        try:
            async with self._sessions() as session:
                row = await session.get(ToolEffectRecord, (task_id, JOURNAL_ATTEMPT, call_index))
                return None if row is None else Recorded(row.result, row.status, row.created_at)
        except Exception as exc:
            if is_outage(exc):
                raise JournalUnavailable(f"effect journal unreachable: {exc}") from exc
            raise

    async def _write(self, statement: Any) -> None:
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(statement)
        except Exception as exc:
            if is_outage(exc):
                raise JournalUnavailable(f"effect journal unreachable: {exc}") from exc
            raise

    def _key(self, task_id: str, call_index: int) -> list[Any]:
        return [
            ToolEffectRecord.task_id == task_id,
            ToolEffectRecord.attempt == JOURNAL_ATTEMPT,
            ToolEffectRecord.call_index == call_index,
        ]

    async def run_once(
        self,
        task_id: str,
        call_index: int,
        tool: str,
        arguments: dict[str, Any],
        call: Callable[[], Awaitable[Any]],
    ) -> tuple[Any, bool]:
        """Like :meth:`run`, for a call that must not happen twice: journaled ``sent``
        first; a ``sent`` row left by a dead worker raises :class:`HoldRequested` (in doubt)
        until a person answers. Returns (result, replayed)."""
        existing = await self.lookup(task_id, call_index)
        if existing is not None and existing.done:
            return existing.result, True
        if existing is not None:
            answer = await self.decisions.decision(task_id, call_index, HoldKind.IN_DOUBT)
            fresh = (
                answer is not None
                and answer.decided_at is not None
                and (existing.created_at is None or answer.decided_at > existing.created_at)
            )
            if answer is None or not fresh:
                log.warning("effect %s#%d is in doubt (sent, never recorded)", task_id, call_index)
                raise HoldRequested(
                    hold(
                        HoldKind.IN_DOUBT,
                        call_index,
                        tool,
                        arguments,
                        reason="a worker sent this call and died before recording its result",
                    )
                )
            metrics.HELD_CALLS_RESUMED.labels(HoldKind.IN_DOUBT.value, answer.status).inc()
            if answer.status == HoldStatus.DONE:
                return await self._complete(task_id, call_index, tool, answer.output), True
            # retry: the operator says it did not happen. A new `sent` time, so this answer
            # does not cover the new try if it dies too.
            await self._write(
                update(ToolEffectRecord)
                .where(*self._key(task_id, call_index))
                .values(created_at=func.now())
            )
        else:
            await self._write(
                # ON CONFLICT is not needed: the task's lease makes us its one executor.
                insert(ToolEffectRecord).values(
                    task_id=task_id,
                    attempt=JOURNAL_ATTEMPT,
                    call_index=call_index,
                    tool=tool,
                    status=EFFECT_SENT,
                    created_at=func.now(),
                )
            )
        try:
            result = await call()
        except Exception:
            # The tool reported a failure: take the `sent` mark back so its retry policy
            # applies (a cancellation leaves it: the call may be on the wire).
            await self._write(
                delete(ToolEffectRecord).where(
                    *self._key(task_id, call_index), ToolEffectRecord.status == EFFECT_SENT
                )
            )
            raise
        return await self._complete(task_id, call_index, tool, result), False

    async def _complete(self, task_id: str, call_index: int, tool: str, result: Any) -> Any:
        ensure_json(result, tool)
        try:
            await self._write(
                update(ToolEffectRecord)
                .where(*self._key(task_id, call_index))
                .values(result=result, status=EFFECT_DONE)
            )
        except JournalUnavailable:
            log.error("effect %s#%d made but not recorded (database away)", task_id, call_index)
            raise
        return result

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

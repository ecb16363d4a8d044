"""Every LLM turn and tool call of an agent, written to `llm_calls` / `tool_calls`.

Rows are keyed by (task, attempt, turn) and (task, attempt, call index) and inserted with
ON CONFLICT DO NOTHING: a step replayed after a crash is recorded once, as it first happened.
Bodies larger than the claim-check threshold (messages sent, response, tool result) go to
the object store and the row keeps a marker (``cadenza_state.claimcheck``), so
``GET /v1/runs/{id}/calls`` returns them whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cadenza_state import LLMCallRecord, ObjectStore, ToolCallRecord
from cadenza_state.claimcheck import store_body
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

MAX_STORED_RESULT_CHARS = 4_000


@dataclass(frozen=True)
class CallSite:
    """Where a call happened: the same for every call of one agent task attempt."""

    tenant_id: str
    run_id: str
    task_id: str
    attempt: int
    agent: str
    agent_version: int | None


class Accounting:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        objects: ObjectStore | None = None,
        claim_check_bytes: int = 256 * 1024,
    ) -> None:
        self._sessions = sessions
        self._objects = objects
        self._threshold = claim_check_bytes

    async def _body(self, site: CallSite, name: str, value: Any) -> Any:
        """The body as the row stores it: inline, or claim-checked when too large (without
        an object store, a large tool result is truncated instead)."""
        if value is None:
            return None
        if self._objects is None:
            return truncate_json(value) if name.startswith("tool") else value
        key = f"runs/{site.run_id}/tasks/{site.task_id}/{site.attempt}/calls/{name}.json"
        return await store_body(self._objects, key, value, self._threshold)

    async def llm_call(
        self,
        site: CallSite,
        *,
        turn: int,
        provider: str,
        model: str,
        request: dict[str, Any],
        response: dict[str, Any] | None,
        tool_calls: list[dict[str, Any]] | None,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        latency_ms: float,
        status: str,
        error: dict[str, Any] | None,
        started_at: datetime,
    ) -> None:
        await self._insert_once(
            LLMCallRecord,
            {
                **_site(site),
                "agent_version": site.agent_version,
                "turn": turn,
                "provider": provider,
                "model": model,
                "request": await self._body(site, f"llm-{turn}-request", request),
                "response": await self._body(site, f"llm-{turn}-response", response),
                "tool_calls": tool_calls,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cost_usd": cost_usd,
                "latency_ms": latency_ms,
                "status": status,
                "error": error,
                "started_at": started_at,
            },
        )

    async def tool_call(
        self,
        site: CallSite,
        *,
        turn: int,
        call_index: int,
        call_id: str | None,
        tool: str,
        arguments: Any,
        result: Any,
        status: str,
        error: str | None,
        latency_ms: float,
        started_at: datetime,
    ) -> None:
        await self._insert_once(
            ToolCallRecord,
            {
                **_site(site),
                "turn": turn,
                "call_index": call_index,
                "call_id": call_id,
                "tool": tool,
                "arguments": arguments,
                "result": await self._body(site, f"tool-{call_index}-result", result),
                "status": status,
                "error": error[:2048] if error else None,
                "latency_ms": latency_ms,
                "started_at": started_at,
            },
        )

    async def _insert_once(self, model: Any, values: dict[str, Any]) -> None:
        async with self._sessions.begin() as session:
            dialect = session.get_bind().dialect.name
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            await session.execute(insert(model).values(**values).on_conflict_do_nothing())


def _site(site: CallSite) -> dict[str, Any]:
    return {
        "tenant_id": site.tenant_id,
        "run_id": site.run_id,
        "task_id": site.task_id,
        "attempt": site.attempt,
        "agent": site.agent,
    }


def truncate_json(value: Any, limit: int = MAX_STORED_RESULT_CHARS) -> Any:
    """``value`` if its JSON fits in ``limit`` characters, else its truncated text."""
    text = json.dumps(value, default=str)
    if len(text) <= limit:
        return value
    return {"truncated": True, "preview": text[:limit]}

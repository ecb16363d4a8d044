"""Held tool calls and a dead letter written straight into a stack's database, for tests of
the inboxes' API, client and CLI without driving an agent to a risky call."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cadenza_cli.dev import DevStack, dev_settings
from cadenza_runtime import Resources, open_resources
from cadenza_state import ApprovalRecord, DeadLetterRecord, RunRecord, utcnow


@asynccontextmanager
async def running_dev_stack(data_dir: Path) -> AsyncIterator[DevStack]:
    """`cadenza dev`'s whole platform in this process, its gateway on a free port."""
    resources = await open_resources(*dev_settings(data_dir))
    dev = DevStack(resources, port=0, data_dir=data_dir)
    await dev.start()
    try:
        yield dev
    finally:
        await dev.stop()


@dataclass(frozen=True)
class Inbox:
    run_id: str
    held: dict[str, str]  # kind (approval, in_doubt) → approval id
    letter_id: int


async def seed_inbox(
    resources: Resources,
    kinds: tuple[str, ...] = ("approval",),
    *,
    arguments: Any = None,
    reason: str | None = None,
) -> Inbox:
    """A running run of tenant ``default`` with one pending held call of each kind (call
    indexes 0, 1, …) and one pending dead letter."""
    run_id = str(uuid.uuid4())
    held = {kind: str(uuid.uuid4()) for kind in kinds}
    async with resources.sessions() as session, session.begin():
        session.add(
            RunRecord(
                id=run_id,
                tenant_id="default",
                workflow_name="w",
                spec={"name": "w", "tasks": []},
                inputs={},
                status="running",
            )
        )
        await session.flush()
        for index, (kind, approval_id) in enumerate(held.items()):
            session.add(
                ApprovalRecord(
                    id=approval_id,
                    tenant_id="default",
                    run_id=run_id,
                    task_id=f"{run_id}:a",
                    node_id="a",
                    attempt=1,
                    call_index=index,
                    kind=kind,
                    status="pending",
                    tool="http_request",
                    arguments=arguments if arguments is not None else {"method": "POST"},
                    reason=reason,
                    on_timeout="reject",
                )
            )
        letter = DeadLetterRecord(
            tenant_id="default",
            original_topic="cadenza.doc.ingest",
            partition=0,
            offset=1,
            consumer_group="cadenza.rag-ingest",
            headers={},
            value=b"not an event",
            reason="DecodeError: missing ce_id",
            error_code="decode_error",
            attempts=0,
            failed_at=utcnow(),
        )
        session.add(letter)
    return Inbox(run_id, held, letter.id)

"""`cadenza approvals …` and `cadenza dead-letters …` against `cadenza dev` (dev-mode gateway,
no key): list the inbox, approve a held call, replay a dead letter."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cadenza_cli.dev import DevStack, dev_settings
from cadenza_runtime import open_resources
from cadenza_state import ApprovalRecord, DeadLetterRecord, RunRecord, utcnow

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


async def cadenza(*args: str, url: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cadenza_cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "CADENZA_URL": url},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[DevStack]:
    resources = await open_resources(*dev_settings(tmp_path))
    dev = DevStack(resources, port=0, data_dir=tmp_path)
    await dev.start()
    yield dev
    await dev.stop()


@pytest.mark.timeout(300)
async def test_list_and_approve_then_replay(stack: DevStack) -> None:
    run_id, approval_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with stack.resources.sessions() as session, session.begin():
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
        session.add(
            ApprovalRecord(
                id=approval_id,
                tenant_id="default",
                run_id=run_id,
                task_id=f"{run_id}:a",
                node_id="a",
                attempt=1,
                call_index=0,
                kind="approval",
                status="pending",
                tool="http_request",
                arguments={"url": "https://shop.example/orders/7", "method": "DELETE"},
                reason="a duplicate",
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
    url = stack.url

    code, out, err = await cadenza("approvals", "list", url=url)
    assert code == 0, err
    assert approval_id in out
    assert "DELETE" in out
    code, out, err = await cadenza("approvals", "approve", approval_id, "-m", "ok", url=url)
    assert code == 0, err
    assert out.strip() == f"{approval_id} approved"
    code, _, err = await cadenza("approvals", "approve", approval_id, url=url)
    assert code == 2
    assert "409" in err

    code, out, err = await cadenza("dead-letters", "replay", str(letter.id), url=url)
    assert code == 0, err
    assert out.strip() == f"{letter.id} replayed"

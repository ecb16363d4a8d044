"""`cadenza approvals …` and `cadenza dead-letters …` against `cadenza dev` (dev-mode gateway,
no key): list the inbox, approve a held call, replay a dead letter."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cadenza_cli.dev import DevStack, dev_settings
from cadenza_runtime import open_resources
from cadenza_state import ApprovalRecord, DeadLetterRecord, RunRecord, utcnow
from test_run_commands import cli

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


async def test_reject_resolve_show_and_discard(stack: DevStack) -> None:
    run_id = str(uuid.uuid4())
    held = {kind: str(uuid.uuid4()) for kind in ("approval", "in_doubt")}
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
        for i, (kind, approval_id) in enumerate(held.items()):
            session.add(
                ApprovalRecord(
                    id=approval_id,
                    tenant_id="default",
                    run_id=run_id,
                    task_id=f"{run_id}:a",
                    node_id="a",
                    attempt=1,
                    call_index=i,
                    kind=kind,
                    status="pending",
                    tool="http_request",
                    arguments={"method": "POST"},
                    reason=None,
                    on_timeout="reject",
                )
            )
        letter = DeadLetterRecord(
            tenant_id="default",
            original_topic="cadenza.doc.ingest",
            partition=0,
            offset=7,
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

    code, out, err = await cli("approvals", "reject", held["approval"], "-m", "no", "--url", url)
    assert (code, out.strip()) == (0, f"{held['approval']} rejected"), err
    code, out, _ = await cli("approvals", "show", held["approval"], "--url", url)
    assert (json.loads(out)["status"], json.loads(out)["comment"]) == ("rejected", "no")
    code, _, err = await cli("approvals", "resolve", held["in_doubt"], "maybe", "--url", url)
    assert code == 2  # the problem names the field
    assert "422" in err
    assert "outcome" in err
    resolve = ("approvals", "resolve", held["in_doubt"], "done", "--output", '{"id": 7}')
    code, out, err = await cli(*resolve, "--url", url)
    assert (code, out.strip()) == (0, f"{held['in_doubt']} done"), err
    listing = ("approvals", "list", "--status", "", "--run", run_id, "--json")
    code, out, _ = await cli(*listing, "--url", url)
    assert {a["id"]: a["status"] for a in json.loads(out)} == {
        held["approval"]: "rejected",
        held["in_doubt"]: "done",
    }

    code, out, err = await cli("dead-letters", "list", "--url", url)
    assert code == 0, err
    assert f"{letter.id}  pending" in out
    assert "DecodeError: missing ce_id" in out
    code, out, err = await cli("dead-letters", "discard", str(letter.id), "--url", url)
    assert (code, out.strip()) == (0, f"{letter.id} discarded"), err
    code, out, _ = await cli("dead-letters", "list", "--json", "--url", url)
    assert json.loads(out) == []

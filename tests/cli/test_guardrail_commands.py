"""`cadenza approvals …` and `cadenza dead-letters …` against `cadenza dev` (dev-mode gateway,
no key): list the inbox, approve a held call, replay a dead letter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cadenza_cli.dev import DevStack
from support.cli import run_cli
from support.inbox import running_dev_stack, seed_inbox
from test_run_commands import cli

pytestmark = pytest.mark.unit


async def cadenza(*args: str, url: str) -> tuple[int, str, str]:
    return await run_cli(*args, env={"CADENZA_URL": url})


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[DevStack]:
    async with running_dev_stack(tmp_path) as dev:
        yield dev


@pytest.mark.timeout(300)
async def test_list_and_approve_then_replay(stack: DevStack) -> None:
    inbox = await seed_inbox(
        stack.resources,
        arguments={"url": "https://shop.example/orders/7", "method": "DELETE"},
        reason="a duplicate",
    )
    approval_id, letter_id = inbox.held["approval"], inbox.letter_id
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

    code, out, err = await cadenza("dead-letters", "replay", str(letter_id), url=url)
    assert code == 0, err
    assert out.strip() == f"{letter_id} replayed"


async def test_reject_resolve_show_and_discard(stack: DevStack) -> None:
    inbox = await seed_inbox(stack.resources, ("approval", "in_doubt"))
    run_id, held, letter_id = inbox.run_id, inbox.held, inbox.letter_id
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
    assert f"{letter_id}  pending" in out
    assert "DecodeError: missing ce_id" in out
    code, out, err = await cli("dead-letters", "discard", str(letter_id), "--url", url)
    assert (code, out.strip()) == (0, f"{letter_id} discarded"), err
    code, out, _ = await cli("dead-letters", "list", "--json", "--url", url)
    assert json.loads(out) == []

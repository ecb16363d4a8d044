"""The operations the CLI sends through cadenza-client, against a running gateway (the whole
platform in one process, `cadenza dev`'s stack, on a free port): replay, calls, triggers,
schedules, events, datasets, evaluations, document replace, held calls and dead letters;
their problems as typed exceptions naming the field; and what the typed models give back
is what the gateway sent (the CLI prints it)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cadenza_cli.client import as_json
from cadenza_cli.dev import DevStack
from cadenza_client import (
    AsyncCadenza,
    Cadenza,
    Conflict,
    NotFound,
    RecordedCall,
    ValidationFailed,
)
from support.inbox import running_dev_stack, seed_inbox

pytestmark = pytest.mark.unit
GREET = """\
name: greet
inputs:
  who: {type: string, default: world}
tasks:
  - id: hello
    tool: transform
    with: {greeting: "hello, ${{ inputs.who }}"}
  - id: shout
    tool: transform
    needs: [hello]
    with: {loud: "${{ tasks.hello.output.greeting.upper() }}"}
output: "${{ tasks.shout.output.loud }}"
"""
TRIGGER = {
    "name": "greetings",
    "topics": [],
    "workflow": "greet",
    "inputs": {"who": "${{ data.who }}"},
}
SCHEDULE = {"name": "nightly", "cron": "0 3 * * *", "workflow": "greet"}


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[DevStack]:
    async with running_dev_stack(tmp_path) as dev:
        yield dev


@pytest.fixture
async def cadenza(stack: DevStack) -> AsyncIterator[AsyncCadenza]:
    async with AsyncCadenza(stack.url, api_key="") as client:  # dev mode: anonymous
        yield client


async def raw(stack: DevStack, path: str) -> Any:
    """The gateway's own JSON, to hold the typed models' dumps against."""
    async with httpx.AsyncClient(base_url=stack.url) as http:
        resp = await http.get(path)
        assert resp.status_code == 200, resp.text
        return resp.json()


async def test_replay_diff_and_calls(stack: DevStack, cadenza: AsyncCadenza) -> None:
    await cadenza.register_workflow(GREET)
    first = await cadenza.start_run("greet", {"who": "ada"})
    parent = await asyncio.wait_for(cadenza.wait_for_run(first.id, poll_s=0.1), 60)
    assert parent.status == "succeeded"
    assert parent.output == "HELLO, ADA"

    rerun = await cadenza.rerun_run(parent.id, from_tasks=["shout"])
    assert (rerun.parent_run_id, (rerun.lineage or {}).get("kind")) == (parent.id, "rerun")
    rerun = await asyncio.wait_for(cadenza.wait_for_run(rerun.id, poll_s=0.1), 60)
    assert {t.node_id: bool(t.reused_from) for t in rerun.tasks} == {"hello": True, "shout": False}

    fork = await cadenza.fork_run(parent.id, inputs={"who": "grace"})
    fork = await asyncio.wait_for(cadenza.wait_for_run(fork.id, poll_s=0.1), 60)
    assert fork.output == "HELLO, GRACE"
    diff = await cadenza.diff_runs(parent.id, fork.id)
    assert diff.related
    assert diff.inputs["who"] == {"a": "ada", "b": "grace"}
    assert not diff.same_output
    assert {t.node_id for t in diff.tasks} == {"hello", "shout"}

    calls = [c async for c in cadenza.iter_calls(parent.id, page_size=1)]
    assert all(isinstance(c, RecordedCall) for c in calls)
    assert [c.id for c in calls] == [
        c["id"] for c in (await raw(stack, f"/v1/runs/{parent.id}/calls"))["items"]
    ]

    # What the CLI prints is what the gateway sent: nothing added, nothing reformatted.
    assert as_json(await cadenza.get_run(fork.id)) == await raw(stack, f"/v1/runs/{fork.id}")
    assert as_json(diff) == await raw(stack, f"/v1/runs/{parent.id}/diff/{fork.id}")

    with pytest.raises(ValidationFailed) as bad:
        await cadenza.rerun_run(parent.id, from_tasks=["nope"])
    assert any("from" in (e.get("field") or "") for e in bad.value.errors)
    with pytest.raises(NotFound):
        await cadenza.fork_run(str(uuid.uuid4()))


async def test_triggers_schedules_and_events(stack: DevStack, cadenza: AsyncCadenza) -> None:
    with pytest.raises(ValidationFailed) as unknown:
        await cadenza.register_trigger(TRIGGER)  # the workflow is not registered yet
    assert [e.get("field") for e in unknown.value.errors] == ["workflow"]
    await cadenza.register_workflow(GREET)

    trigger = await cadenza.register_trigger(TRIGGER)
    assert (trigger.name, trigger.version, trigger.enabled) == ("greetings", 1, True)
    accepted = await cadenza.send_event(
        {"specversion": "1.0", "id": "e-1", "source": "/t", "type": "t", "data": {"who": "bo"}}
    )
    again = await cadenza.send_event(
        {"specversion": "1.0", "id": "e-1", "source": "/t", "type": "t", "data": {"who": "bo"}}
    )
    assert (accepted.started, again.started, again.duplicates) == (1, 0, 1)
    off = await cadenza.set_trigger_enabled("greetings", False)
    assert (off.version, off.enabled) == (2, False)
    assert (await cadenza.get_trigger("greetings")).enabled is False
    listed = await cadenza.list_triggers()
    assert as_json(listed) == await raw(stack, "/v1/triggers")
    await cadenza.delete_trigger("greetings")
    with pytest.raises(NotFound):
        await cadenza.get_trigger("greetings")

    schedule = await cadenza.create_schedule(SCHEDULE)
    assert schedule.next_fires
    assert not schedule.paused
    with pytest.raises(Conflict):
        await cadenza.create_schedule(SCHEDULE)
    assert (await cadenza.set_schedule_paused("nightly", True)).paused
    assert not (await cadenza.set_schedule_paused("nightly", False)).paused
    assert as_json(await cadenza.get_schedule("nightly")) == await raw(
        stack, "/v1/schedules/nightly"
    )
    assert [s.name for s in (await cadenza.list_schedules()).items] == ["nightly"]
    await cadenza.delete_schedule("nightly")
    with pytest.raises(NotFound):
        await cadenza.delete_schedule("nightly")


async def test_datasets_evaluations_and_documents(cadenza: AsyncCadenza) -> None:
    loaded = await cadenza.load_dataset("tx", "records:\n  - {key: a, data: {n: 1}}\n")
    assert (loaded.dataset, loaded.records) == ("tx", 1)
    with pytest.raises(ValidationFailed):
        await cadenza.load_dataset(
            "tx", '{"records": [{"key": "a"}, {"key": "a"}]}', content_type="application/json"
        )

    stored = await cadenza.store_evaluation(
        "suite-1",
        [
            {
                "case": "c",
                "variant": "v2",
                "status": "failed",
                "passed": False,
                "credit": 0,
                "scores": [],
            }
        ],
        regressions=[{"case": "c", "detail": "passed before"}],
        agent="calc@2",
    )
    assert (stored.suite, stored.agent, stored.passed) == ("suite-1", "calc@2", False)
    assert [r["case"] for r in stored.regressions] == ["c"]

    await cadenza.create_collection("kb")
    first = await cadenza.upload_document(
        "kb", "a.md", b"# A\n\nalpha", "text/markdown", title="a.md"
    )
    same = await cadenza.upload_document(
        "kb", "a.md", b"# A\n\nalpha", "text/markdown", title="a.md"
    )
    assert (first.accepted, same.accepted, same.id) == (True, False, first.id)
    replaced = await cadenza.replace_document(
        "kb", first.id, "a.md", b"# A\n\nbeta", "text/markdown"
    )
    assert (replaced.accepted, replaced.id) == (True, first.id)
    assert "accepted" not in as_json(replaced)  # not part of the resource
    assert [d.id async for d in cadenza.iter_documents("kb")] == [first.id]


async def test_held_calls_and_dead_letters_async_and_sync(
    stack: DevStack, cadenza: AsyncCadenza
) -> None:
    inbox = await seed_inbox(stack.resources, ("approval", "in_doubt"))
    run_id, held, letter_id = inbox.run_id, inbox.held, inbox.letter_id

    pending = await cadenza.list_approvals(status="pending", run_id=run_id)
    assert {a.id for a in pending.items} == set(held.values())
    assert as_json(pending) == await raw(stack, f"/v1/approvals?status=pending&run_id={run_id}")
    rejected = await cadenza.answer_approval(held["approval"], approve=False, comment="no")
    assert (rejected.status, rejected.comment) == ("rejected", "no")
    with pytest.raises(Conflict):
        await cadenza.answer_approval(held["approval"], approve=True)
    with pytest.raises(ValidationFailed) as bad:
        await cadenza.resolve_approval(held["in_doubt"], "maybe")
    assert any("outcome" in (e.get("field") or "") for e in bad.value.errors)

    def sync_side() -> tuple[str, str, list[int]]:  # the sync client sends the same calls
        with Cadenza(stack.url, api_key="") as client:
            done = client.resolve_approval(held["in_doubt"], "done", output={"ok": True})
            letters = client.list_dead_letters(status="pending")
            discarded = client.settle_dead_letter(letter_id, replay=False)
            return done.status, discarded.status, [d.id for d in letters.items]

    done, discarded, letters = await asyncio.to_thread(sync_side)
    assert (done, discarded, letters) == ("done", "discarded", [letter_id])
    assert (await cadenza.get_approval(held["in_doubt"])).output == {"ok": True}

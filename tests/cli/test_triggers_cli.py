"""`cadenza dev` runs the trigger service; a bundle registers its triggers; `cadenza
events send`, `cadenza triggers` and `cadenza schedules` drive them (CLI as subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cadenza_cli.dev import DevStack
from cadenza_events.memory import MemoryBus
from cadenza_state import RunRecord
from sqlalchemy import select
from support import assert_eventually
from test_run_commands import cadenza, cli, stack  # the CLI as a subprocess; a dev stack

pytestmark = pytest.mark.unit
__all__ = ["stack"]

WORKFLOW = """\
name: echo
inputs:
  n: {type: integer}
tasks:
  - id: t
    tool: transform
    with: {n: "${{ inputs.n }}"}
output: "${{ tasks.t.output.n }}"
"""
TRIGGER = """\
name: numbers
topics: [upstream.numbers]
filter: {type: com.example.number}
workflow: echo
inputs: {n: "${{ data.n }}"}
"""


async def test_a_bundle_registers_its_trigger_and_events_start_runs_once(
    stack: DevStack, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "triggers").mkdir(parents=True)
    (bundle / "workflow.yaml").write_text(WORKFLOW)
    (bundle / "triggers" / "numbers.yaml").write_text(TRIGGER)
    (bundle / "inputs.json").write_text('{"n": 0}')
    code, _, err = await cadenza("run", str(bundle), "--url", stack.url)
    assert code == 0, err
    assert "trigger numbers@1" in err
    assert "registered" in err
    code, _, err = await cadenza("run", str(bundle), "--url", stack.url)
    assert "unchanged" in err

    send = ("events", "send", "-t", "com.example.number", "-d", '{"n": 5}', "--id", "e-1")
    code, out, err = await cadenza(*send, "--url", stack.url)
    assert code == 0, err
    first = json.loads(out)
    assert first["started"] == 1
    code, out, _ = await cadenza(*send, "--url", stack.url)
    assert json.loads(out)["duplicates"] == 1
    run_id = first["events"][0]["runs"][0]["run_id"]
    async with httpx.AsyncClient(base_url=stack.url) as api:
        assert (await api.get(f"/v1/runs/{run_id}")).json()["inputs"] == {"n": 5}
    code, out, _ = await cadenza("triggers", "disable", "numbers", "--url", stack.url)
    assert json.loads(out)["enabled"] is False


async def test_dev_mode_consumes_upstream_topics_in_process(stack: DevStack) -> None:
    """The in-process bus stands in for Kafka: a record on the trigger's topic starts a run."""
    async with stack.resources.sessions() as session, session.begin():
        from cadenza_state import TriggerRecord, WorkflowRecord

        session.add(
            WorkflowRecord(
                tenant_id="default",
                name="echo",
                version=1,
                spec={
                    "name": "echo",
                    "inputs": {"n": {"type": "integer"}},
                    "tasks": [{"id": "t", "tool": "transform", "with": {"n": "${{ inputs.n }}"}}],
                },
            )
        )
        session.add(
            TriggerRecord(
                tenant_id="default",
                name="numbers",
                version=1,
                spec={
                    "name": "numbers",
                    "topics": ["upstream.numbers"],
                    "workflow": "echo",
                    "inputs": {"n": "${{ data.n }}"},
                    "enabled": True,
                },
            )
        )
    bus = stack.resources.bus
    assert isinstance(bus, MemoryBus)

    async def subscribed() -> bool:
        return "upstream.numbers" in bus.broker.topics

    await assert_eventually(subscribed, timeout=15, message="the dev trigger consumer")
    bus.broker.append(
        "upstream.numbers",
        b"k",
        b'{"n": 9}',
        [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"x1"),
            ("ce_source", b"/test"),
            ("ce_type", b"com.example.number"),
        ],
    )

    async def run_started() -> list[RunRecord]:
        async with stack.resources.sessions() as session:
            return list((await session.scalars(select(RunRecord))).all())

    (run,) = await assert_eventually(run_started, timeout=15, message="a run from the topic")
    assert run.inputs == {"n": 9}
    assert run.started_by is not None
    assert (run.started_by["topic"], run.started_by["offset"]) == ("upstream.numbers", 0)


async def test_triggers_and_schedules_commands(stack: DevStack, tmp_path: Path) -> None:
    schedule = tmp_path / "nightly.yaml"
    schedule.write_text("name: nightly\ncron: '0 3 * * *'\nworkflow: echo\ninputs: {n: 1}\n")
    code, _, err = await cli("schedules", "create", str(schedule), "--url", stack.url)
    assert code == 2  # no workflow `echo` yet: the problem names the field
    assert "422" in err
    assert "workflow" in err

    trigger = tmp_path / "numbers.yaml"
    trigger.write_text(TRIGGER)
    async with httpx.AsyncClient(base_url=stack.url) as api:
        yaml_body = {"Content-Type": "application/yaml"}
        resp = await api.post("/v1/workflows", content=WORKFLOW, headers=yaml_body)
        assert resp.status_code == 201, resp.text
    code, out, err = await cli("triggers", "register", str(trigger), "--url", stack.url)
    assert code == 0, err
    assert json.loads(out)["version"] == 1
    code, out, _ = await cli("triggers", "disable", "numbers", "--url", stack.url)
    assert json.loads(out)["enabled"] is False
    code, out, _ = await cli("triggers", "enable", "numbers", "--url", stack.url)
    assert (json.loads(out)["version"], json.loads(out)["enabled"]) == (3, True)
    code, out, _ = await cli("triggers", "list", "--url", stack.url)
    assert [t["name"] for t in json.loads(out)["items"]] == ["numbers"]
    code, _, err = await cli("triggers", "delete", "numbers", "--url", stack.url)
    assert (code, err.strip()) == (0, "trigger numbers deleted")
    code, _, err = await cli("triggers", "show", "numbers", "--url", stack.url)
    assert code == 2
    assert "404" in err

    code, out, err = await cli("schedules", "create", str(schedule), "--url", stack.url)
    assert code == 0, err
    assert json.loads(out)["paused"] is False
    code, out, _ = await cli("schedules", "pause", "nightly", "--url", stack.url)
    assert json.loads(out)["paused"] is True
    code, out, _ = await cli("schedules", "resume", "nightly", "--url", stack.url)
    assert json.loads(out)["paused"] is False
    code, out, _ = await cli("schedules", "show", "nightly", "--url", stack.url)
    assert len(json.loads(out)["next_fires"]) > 1
    code, _, err = await cli("schedules", "delete", "nightly", "--url", stack.url)
    assert (code, err.strip()) == (0, "schedule nightly deleted")
    code, out, _ = await cli("schedules", "list", "--url", stack.url)
    assert json.loads(out)["items"] == []

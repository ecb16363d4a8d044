"""`cadenza run`, `cadenza runs …` and `cadenza dev --run`, as a user types them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cadenza_cli.dev import DevStack, dev_settings
from cadenza_cli.main import app
from cadenza_cli.replay import format_call
from cadenza_client import RecordedCall
from cadenza_runtime import open_resources
from cadenza_state import RunRecord, TaskRecord
from support.cli import run_cli
from typer.testing import CliRunner

pytestmark = pytest.mark.unit


async def cadenza(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    return await run_cli(*args, timeout=timeout)


async def cli(*args: str) -> tuple[int, str, str]:
    """The same command in this process (a thread: it runs its own event loop), for tests
    of many commands; a CLI process costs seconds of imports each."""
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[DevStack]:
    resources = await open_resources(*dev_settings(tmp_path))
    dev = DevStack(resources, port=0, data_dir=tmp_path)
    await dev.start()
    yield dev
    await dev.stop()


async def test_run_wait_shows_progress_and_prints_the_output(stack: DevStack) -> None:
    code, out, err = await cadenza(
        "run", "examples/hello.yaml", "-i", "customer=grace hopper", "--wait", "--url", stack.url
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "succeeded"
    assert result["output"]["customer"] == "Grace Hopper"
    assert "summary" in err  # live per-task progress goes to stderr
    assert "succeeded" in err

    code, out, err = await cadenza("runs", "list", "--url", stack.url)
    assert code == 0, err
    assert result["id"] in out

    code, out, _ = await cadenza("runs", "show", result["id"], "--url", stack.url)
    assert json.loads(out)["id"] == result["id"]

    code, _, err = await cadenza("runs", "cancel", result["id"], "--url", stack.url)
    assert code == 2  # a finished run cannot be cancelled: the problem is printed
    assert "409" in err


async def test_runs_cancel_waits_until_the_orchestrator_cancelled_the_run(
    stack: DevStack, tmp_path: Path
) -> None:
    flow = tmp_path / "long.yaml"
    flow.write_text("name: long\ntasks:\n  - id: nap\n    tool: sleep\n    with: {seconds: 60}\n")
    code, out, err = await cadenza("run", str(flow), "--url", stack.url)
    assert code == 0, err
    run_id = json.loads(out)["id"]
    code, out, err = await cadenza(
        "runs", "cancel", run_id, "--reason", "not needed", "--url", stack.url
    )
    assert code == 0, err
    assert out.strip() == f"run {run_id} cancelled"
    code, out, _ = await cadenza("runs", "show", run_id, "--url", stack.url)
    assert {t["status"] for t in json.loads(out)["tasks"]} == {"cancelled"}


async def test_run_reports_bad_input_naming_the_field(stack: DevStack) -> None:
    code, _, err = await cadenza(
        "run", "examples/hello.yaml", "-i", "review_threshold=cheap", "--url", stack.url
    )
    assert code == 2
    assert "422" in err
    assert "inputs.review_threshold" in err


async def test_dev_run_executes_an_example_end_to_end(tmp_path: Path) -> None:
    code, out, err = await cadenza(
        "dev", "--run", "examples/hello.yaml", "--data-dir", str(tmp_path / "dev")
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "succeeded"
    assert result["output"] == {"customer": "Ada Lovelace", "needs_review": True, "total": 148.0}


async def test_runs_resume_raises_the_limit_and_waits_for_the_run(
    stack: DevStack, tmp_path: Path
) -> None:
    flow = tmp_path / "once.yaml"
    flow.write_text("name: once\ntasks:\n  - id: step\n    tool: transform\n    with: {x: 1}\n")
    code, out, err = await cadenza("run", str(flow), "--wait", "--url", stack.url)
    assert code == 0, err
    run_id = json.loads(out)["id"]
    code, _, err = await cadenza("runs", "resume", run_id, "--url", stack.url)
    assert code == 2  # only a paused run resumes: the problem is printed
    assert "409" in err
    # As the orchestrator leaves a run a pausing budget stopped (see docs/guardrails.md).
    async with stack.resources.sessions() as session, session.begin():
        run = await session.get(RunRecord, run_id)
        assert run is not None
        run.status, run.error, run.finished_at = "paused", {"code": "budget_exceeded"}, None
        task = await session.get(TaskRecord, f"{run_id}.step")
        assert task is not None
        task.status = "paused"
    code, out, err = await cadenza(
        "runs", "resume", run_id, "--max-tokens", "5000", "--reason", "ok'd", "--url", stack.url
    )
    assert code == 0, err
    assert out.strip() == f"run {run_id} succeeded"
    code, out, _ = await cadenza("runs", "show", run_id, "--url", stack.url)
    shown = json.loads(out)
    assert shown["budget"]["max_tokens"] == 5000
    assert [(t["status"], t["attempt"]) for t in shown["tasks"]] == [("succeeded", 2)]


async def test_rerun_fork_and_diff(stack: DevStack) -> None:
    code, out, err = await cli("run", "examples/hello.yaml", "--wait", "--url", stack.url)
    assert code == 0, err
    parent = json.loads(out)["id"]

    code, out, err = await cli(
        "runs", "rerun", parent, "--from", "summary", "--wait", "--url", stack.url
    )
    assert code == 0, err
    assert f"(rerun of {parent})" in err
    rerun = json.loads(out)
    assert (rerun["status"], rerun["parent_run_id"]) == ("succeeded", parent)
    assert "summary" not in rerun["reused"]
    assert "prepare" in rerun["reused"]

    code, out, err = await cli(
        "runs", "fork", parent, "-i", "customer=grace hopper", "--url", stack.url
    )
    assert code == 0, err
    fork = json.loads(out)  # without --wait: the accepted run, whole
    assert (fork["parent_run_id"], fork["lineage"]["kind"]) == (parent, "fork")
    code, out, err = await cli("runs", "watch", fork["id"], "--url", stack.url)
    assert code == 0, err
    assert json.loads(out)["output"]["customer"] == "Grace Hopper"

    code, out, err = await cli("runs", "diff", parent, fork["id"], "--url", stack.url)
    assert code == 0, err
    assert 'input customer: "ada lovelace" -> "grace hopper"' in out
    assert out.strip().endswith("output differs")

    code, _, err = await cli("runs", "fork", parent, "--task-model", "nope", "--url", stack.url)
    assert code == 2
    assert "TASK=VALUE" in err
    code, _, err = await cli("runs", "rerun", parent, "--from", "nope", "--url", stack.url)
    assert code == 2
    assert "422" in err
    assert "from" in err


def test_a_call_is_one_line() -> None:
    llm = RecordedCall.model_validate(
        {
            "id": "c1",
            "kind": "llm",
            "task_id": "r:ask",
            "node_id": "ask",
            "attempt": 1,
            "turn": 0,
            "status": "ok",
            "at": "2026-12-04T10:00:00Z",
            "provider": "local",
            "model": "smollm2-135m",
            "input_tokens": 120,
            "output_tokens": 8,
            "cost_usd": None,
            "latency_ms": 812.4,
        }
    )
    assert format_call(llm).split() == [
        "ask#1.0", "ok", "812ms", "llm", "local:smollm2-135m", "120→8", "tokens", "$0.000000"
    ]  # fmt: skip
    tool = llm.model_copy(
        update={"kind": "tool", "turn": None, "tool": "calculator", "arguments": {"x": 1},
                "latency_ms": None, "error": "boom"}
    )  # fmt: skip
    assert format_call(tool).split() == [
        "ask#1", "ok", "-", "tool", 'calculator({"x":', "1})", "error:", "boom"
    ]  # fmt: skip

"""PII output checks: detection with offline validators, and the block / redact / flag
actions on agent answers and tool arguments (scripted provider)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from agent_support import (
    ScriptedProvider,
    answer,
    calls,
    llm_rows,
    register_agent,
    start_agent_worker,
    tool_rows,
)
from cadenza_llm import LLMSettings, ProviderRegistry
from cadenza_state import RunRecord
from cadenza_worker import ToolRegistry
from cadenza_worker.guardrails import (
    DetectorLoadError,
    PiiGuard,
    detect,
    enforce,
    load_detectors,
    redact,
)
from cadenza_workflow import PiiPolicy
from langchain_core.runnables import RunnableConfig
from support import assert_eventually
from support.tracing import capture_spans
from worker_support import BOTH_STACKS, Stack, metric

ALL = ["email", "phone", "credit_card", "iban", "national_id"]
LEAK = "Reach alice@example.com, card 4111 1111 1111 1111."


@pytest.mark.unit
def test_detection_confirms_candidates_with_checksums() -> None:
    text = (
        "Mail alice@example.com or call +1 415-555-2671, card 4111 1111 1111 1111, "
        "IBAN DE89 3704 0044 0532 0130 00, SSN 536-90-4399."
    )
    found = detect(text, ALL, ["US"])
    assert [f.entity for f in found] == ["email", "phone", "credit_card", "iban", "national_id"]
    assert redact(text, found) == (
        "Mail <EMAIL> or call <PHONE>, card <CREDIT_CARD>, IBAN <IBAN>, SSN <NATIONAL_ID>."
    )
    assert all("alice" not in f.preview and "4111 1111" not in f.preview for f in found)


@pytest.mark.unit
def test_numbers_that_fail_their_checksum_are_not_pii() -> None:
    text = "Order 4111 1111 1111 1112, IBAN DE00 3704 0044 0532 0130 00, ref 000-00-0000."
    assert detect(text, ALL, ["US"]) == []
    assert detect("call 020 7946 0958", ["phone"], ["GB"])[0].entity == "phone"
    assert detect("alice@example.com", ["phone"], ["US"]) == []  # only what was asked for


def guardrail_events(stack: Stack, task_id: str) -> list[dict[str, object]]:
    return [
        e.payload.data
        for e in stack.events
        if e.payload.task_id == task_id and e.payload.kind == "guardrail.check"
    ]


@BOTH_STACKS
async def test_block_fails_the_task_with_guardrail_violated(stack: Stack) -> None:
    ref = await register_agent(stack, tools=[], guardrails={"pii": {"action": "block"}})
    await start_agent_worker(stack, ScriptedProvider([answer(LEAK)]))
    blocked = metric(
        "cadenza_guardrail_findings_total", check="pii", entity="email", action="block"
    )
    task = await stack.add_task(ref, {"prompt": "who?"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "guardrail_violated"
    assert result.error.details is not None
    assert [f["entity"] for f in result.error.details["findings"]] == ["email", "credit_card"]
    assert "alice@example.com" not in str(result.error.model_dump())
    after = metric("cadenza_guardrail_findings_total", check="pii", entity="email", action="block")
    assert after == blocked + 1
    await assert_eventually(lambda: len(guardrail_events(stack, task.task_id)) == 1)
    event = guardrail_events(stack, task.task_id)[0]
    assert (event["check"], event["action"], event["target"]) == ("pii", "block", "output")


async def test_redact_replaces_pii_in_the_answer(stack: Stack) -> None:
    ref = await register_agent(
        stack, tools=[], guardrails={"pii": {"action": "redact", "entities": ["email"]}}
    )
    await start_agent_worker(stack, ScriptedProvider([answer(LEAK)]))
    task = await stack.add_task(ref, {"prompt": "who?"}, kind="agent")
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.status == "succeeded", result.error
    assert result.output == "Reach <EMAIL>, card 4111 1111 1111 1111."


async def test_redact_applies_to_tool_arguments_before_the_call(stack: Stack) -> None:
    ref = await register_agent(stack, guardrails={"pii": {"action": "redact"}})
    provider = ScriptedProvider([calls(("echo", {"text": "mail bob@example.org"})), answer("ok")])
    echo = await start_agent_worker(stack, provider)
    task = await stack.add_task(ref, {"prompt": "echo"}, kind="agent")
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.status == "succeeded", result.error
    assert echo.calls == [{"text": "mail <EMAIL>"}]
    assert [t.arguments for t in await tool_rows(stack, task.task_id)] == [{"text": "mail <EMAIL>"}]
    await assert_eventually(lambda: len(guardrail_events(stack, task.task_id)) == 1)
    assert guardrail_events(stack, task.task_id)[0]["target"] == "tool_arguments"


async def test_flag_records_and_lets_the_answer_through(stack: Stack) -> None:
    ref = await register_agent(stack, tools=[], guardrails={"pii": {"action": "flag"}})
    await start_agent_worker(stack, ScriptedProvider([answer(LEAK)]))
    task = await stack.add_task(ref, {"prompt": "who?"}, kind="agent")
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.status == "succeeded", result.error
    assert result.output == LEAK
    await assert_eventually(lambda: len(guardrail_events(stack, task.task_id)) == 1)
    event = guardrail_events(stack, task.task_id)[0]
    assert event["action"] == "flag"
    assert "alice@example.com" not in str(event)


async def stored_copies(stack: Stack, task_id: str) -> str:
    """Everything Cadenza stored of a task's conversation, as text: its ``llm_calls`` rows
    (request, response, tool calls), its ``tool_calls`` rows, every LangGraph checkpoint of
    its first attempt (the conversation and the pending writes) and its run events."""
    parts: list[object] = []
    for row in await llm_rows(stack, task_id):
        parts += [row.request, row.response, row.tool_calls]
    parts += [(t.arguments, t.result) for t in await tool_rows(stack, task_id)]
    checkpointer = await stack.workers[-1].agents.checkpointer()
    config: RunnableConfig = {"configurable": {"thread_id": f"{task_id}:1"}}
    checkpoints = [c async for c in checkpointer.alist(config)]
    assert checkpoints, "the loop checkpointed nothing"
    parts += [(c.checkpoint["channel_values"], c.pending_writes) for c in checkpoints]
    parts += [e.payload.model_dump() for e in stack.events if e.payload.task_id == task_id]
    return json.dumps(parts, default=str)


@BOTH_STACKS
async def test_a_redacted_answer_is_never_stored_raw(stack: Stack) -> None:
    """Redaction reaches what is stored: the raw answer is in no ``llm_calls`` row, no
    checkpoint and no run event — the reply is redacted as it arrives."""
    ref = await register_agent(
        stack,
        tools=[],
        guardrails={"pii": {"action": "redact", "entities": ["email", "credit_card"]}},
    )
    await start_agent_worker(stack, ScriptedProvider([answer(LEAK)]))
    task = await stack.add_task(ref, {"prompt": "who?"}, kind="agent")
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.output == "Reach <EMAIL>, card <CREDIT_CARD>."
    await assert_eventually(lambda: len(guardrail_events(stack, task.task_id)) == 1)
    stored = await stored_copies(stack, task.task_id)
    assert "alice@example.com" not in stored
    assert "4111 1111 1111 1111" not in stored
    assert "Reach <EMAIL>, card <CREDIT_CARD>." in stored  # the copies are there, redacted
    [row] = await llm_rows(stack, task.task_id)
    assert row.response is not None
    assert row.response["content"] == "Reach <EMAIL>, card <CREDIT_CARD>."


@BOTH_STACKS
async def test_redacted_tool_arguments_are_never_stored_raw(stack: Stack) -> None:
    ref = await register_agent(stack, guardrails={"pii": {"action": "redact"}})
    provider = ScriptedProvider([calls(("echo", {"text": "mail bob@example.org"})), answer("ok")])
    echo = await start_agent_worker(stack, provider)
    task = await stack.add_task(ref, {"prompt": "echo"}, kind="agent")
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.status == "succeeded", result.error
    assert echo.calls == [{"text": "mail <EMAIL>"}]
    # The second turn's request carries the first reply back to the model: redacted too.
    assert "bob@example.org" not in json.dumps(provider.requests[1].messages)
    await assert_eventually(lambda: len(guardrail_events(stack, task.task_id)) == 1)
    stored = await stored_copies(stack, task.task_id)
    assert "bob@example.org" not in stored
    assert "mail <EMAIL>" in stored
    first = (await llm_rows(stack, task.task_id))[0]
    assert first.tool_calls is not None
    assert first.tool_calls[0]["arguments"] == {"text": "mail <EMAIL>"}


async def test_a_structured_answer_is_redacted_value_by_value(stack: Stack) -> None:
    schema = {"type": "object", "properties": {"contact": {"type": "string"}}}
    ref = await register_agent(
        stack, tools=[], output_schema=schema, guardrails={"pii": {"action": "redact"}}
    )
    await start_agent_worker(stack, ScriptedProvider([answer({"contact": "alice@example.com"})]))
    task = await stack.add_task(ref, {"prompt": "who?"}, kind="agent")
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.status == "succeeded", result.error
    assert result.output == {"contact": "<EMAIL>"}
    [row] = await llm_rows(stack, task.task_id)
    assert row.response is not None
    assert json.loads(row.response["content"]) == {"contact": "<EMAIL>"}


# -- the embedded model (replayed) -------------------------------------------------------

CASSETTE = Path(__file__).parent / "cassettes" / "guardrails.json"
MODE = "record" if os.environ.get("CADENZA_TEST_LLM") == "record" else "replay"


@pytest.mark.parametrize("action", ["block", "redact", "flag"])
async def test_pii_policy_on_the_embedded_model(stack: Stack, action: str) -> None:
    """The answer of `local:smollm2-135m` (recorded into tests/worker/cassettes/
    guardrails.json; re-record with CADENZA_TEST_LLM=record) repeats the customer's email."""
    ref = await register_agent(
        stack,
        name="support",
        system_prompt="You are a support assistant. Answer with the customer's email address.",
        model="local:smollm2-135m",
        tools=[],
        max_iterations=1,
        guardrails={"pii": {"action": action}},
    )
    llm = ProviderRegistry(LLMSettings(cassette_mode=MODE, cassette_path=CASSETTE))
    await stack.start_worker(tools=ToolRegistry([]), llm=llm)
    task = await stack.add_task(
        ref,
        {"prompt": "The customer is Alice Smith, alice.smith@example.com. What is her email?"},
        kind="agent",
        timeout_s=600,
    )
    await stack.dispatch(task)
    result = await stack.result(task, timeout=600)
    if action == "block":
        assert result.status == "failed"
        assert result.error is not None
        assert result.error.code == "guardrail_violated"
        return
    assert result.status == "succeeded", result.error
    assert isinstance(result.output, str)
    if action == "redact":
        assert "<EMAIL>" in result.output
        assert "@example.com" not in result.output
    else:
        assert "alice.smith@example.com" in result.output
    await assert_eventually(lambda: len(guardrail_events(stack, task.task_id)) == 1)


async def test_a_workflow_policy_applies_to_agents_without_their_own(stack: Stack) -> None:
    ref = await register_agent(stack, tools=[])
    await start_agent_worker(stack, ScriptedProvider([answer(LEAK)]))
    task = await stack.add_task(ref, {"prompt": "who?"}, kind="agent")
    async with stack.resources.sessions() as session, session.begin():
        run = await session.get(RunRecord, task.run_id)
        assert run is not None
        run.spec = {"guardrails": {"pii": {"action": "redact", "entities": ["credit_card"]}}}
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.status == "succeeded", result.error
    assert result.output == "Reach alice@example.com, card <CREDIT_CARD>."


@pytest.mark.unit
def test_a_finding_is_an_apply_guardrail_span_with_finding_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = capture_spans(monkeypatch, "cadenza_worker.guardrails.check.tracer")
    events: list[tuple[str, dict[str, object]]] = []
    guard = PiiGuard(PiiPolicy(action="redact"))

    out = enforce(
        guard,
        {"to": "bob@example.org", "note": "ok"},
        target="tool_arguments",
        agent="helper",
        where="the arguments of tool 'mail'",
        target_id="call_1",
        emit=lambda kind, data: events.append((kind, data)),
    )
    assert out == {"to": "<EMAIL>", "note": "ok"}
    (span,) = exporter.get_finished_spans()
    assert span.name == "apply_guardrail cadenza.pii"
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.operation.name"] == "apply_guardrail"
    assert attrs["gen_ai.security.target.type"] == "tool_call"
    assert attrs["gen_ai.security.target.id"] == "call_1"
    assert attrs["gen_ai.security.decision.type"] == "modify"
    (finding,) = span.events
    assert finding.name == "gen_ai.security.finding"
    assert dict(finding.attributes or {})["gen_ai.security.risk.category"] == "pii"
    assert "bob@example.org" not in str(finding.attributes)
    assert [kind for kind, _ in events] == ["guardrail.check"]
    # Nothing found: no span, no event, the value itself goes on.
    clean = {"note": "ok"}
    assert (
        enforce(
            guard,
            clean,
            target="output",
            agent="helper",
            where="x",
            target_id=None,
            emit=events.append,  # type: ignore[arg-type]
        )
        is clean
    )
    assert len(exporter.get_finished_spans()) == 1


# -- detectors plugged in by the operator (names) --------------------------------------


async def test_a_plugged_in_names_detector_joins_the_policy(stack: Stack) -> None:
    ref = await register_agent(stack, tools=[], guardrails={"pii": {"action": "redact"}})
    reply = "Alice Johnson (alice@example.com) approved; ask Robert Smith."
    await start_agent_worker(
        stack, ScriptedProvider([answer(reply)]), pii_detectors=["name_detector:names"]
    )
    task = await stack.add_task(ref, {"prompt": "who?"}, kind="agent")
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.output == "<NAME> (<EMAIL>) approved; ask <NAME>."
    await assert_eventually(lambda: len(guardrail_events(stack, task.task_id)) == 1)
    event = guardrail_events(stack, task.task_id)[0]
    assert [f["entity"] for f in event["findings"]] == ["name", "email", "name"]  # type: ignore[index]
    assert "Johnson" not in json.dumps(event)  # masked, like every finding
    assert "Alice Johnson" not in await stored_copies(stack, task.task_id)


@pytest.mark.unit
@pytest.mark.parametrize(
    "path",
    [
        "name_detector",
        "name_detector:missing",
        "no_such_module:names",
        "name_detector:NOT_CALLABLE",
    ],
)
def test_a_detector_that_cannot_be_loaded_stops_the_worker(path: str) -> None:
    with pytest.raises(DetectorLoadError, match=path.split(":")[0]):
        load_detectors([path])

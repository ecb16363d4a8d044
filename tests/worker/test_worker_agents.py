"""kind=agent on the worker: the LangGraph loop, its checkpoints, accounting and limits.

The LLM is a scripted test double (`agent_support.ScriptedProvider`) so each test pins the
exact turns; the embedded model runs in tests/llm and the e2e scenarios.
"""

from __future__ import annotations

from typing import Any

import pytest
from agent_support import (
    EchoTool,
    ScriptedProvider,
    ScriptedRegistry,
    answer,
    calls,
    crash_once,
    llm_rows,
    register_agent,
    tool_rows,
)
from cadenza_worker import ToolRegistry
from support import assert_eventually
from worker_support import BOTH_STACKS, Stack, metric

CLASSIFICATION = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["fraud", "psp_outage"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["category", "confidence"],
    "additionalProperties": False,
}


async def start(
    stack: Stack, provider: ScriptedProvider, *tools: object, **settings: object
) -> EchoTool:
    echo = EchoTool()
    registry = ToolRegistry([echo, *tools])  # type: ignore[list-item]
    await stack.start_worker(tools=registry, llm=ScriptedRegistry(provider), **settings)
    return echo


@BOTH_STACKS
async def test_tool_loop_runs_tools_then_answers_and_accounts_every_turn(stack: Stack) -> None:
    ref = await register_agent(stack)
    provider = ScriptedProvider(
        [calls(("echo", {"text": "hi"})), answer("The echo said hi.", tokens=(40, 8))]
    )
    echo = await start(stack, provider)
    task = await stack.add_task(ref, {"prompt": "Echo hi", "customer": "acme"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "succeeded", result.error
    assert result.output == "The echo said hi."
    assert echo.calls == [{"text": "hi"}]
    first, second = provider.requests
    assert first.messages[0] == {"role": "system", "content": "You help."}
    assert first.messages[1]["content"].startswith("Echo hi\n\nContext:\n")
    assert '"customer": "acme"' in first.messages[1]["content"]
    assert [t.name for t in first.tools] == ["echo"]
    assert first.tools[0].parameters["required"] == ["text"]
    tool_reply = second.messages[-1]
    assert tool_reply["role"] == "tool"
    assert tool_reply["tool_call_id"] == "call_0_echo"
    assert '"echo": "hi"' in tool_reply["content"]

    llm = await llm_rows(stack, task.task_id)
    assert [(r.turn, r.status, r.input_tokens, r.output_tokens) for r in llm] == [
        (0, "ok", 10, 5),
        (1, "ok", 40, 8),
    ]
    assert llm[1].cost_usd == pytest.approx((40 * 1 + 8 * 2) / 1e6)
    assert llm[0].tool_calls == [{"id": "call_0_echo", "name": "echo", "arguments": {"text": "hi"}}]
    assert llm[0].agent == "helper"
    assert llm[0].agent_version == 1
    assert llm[0].provider == "scripted"
    tools = await tool_rows(stack, task.task_id)
    assert [(t.tool, t.status, t.call_index, t.result) for t in tools] == [
        ("echo", "ok", 0, {"echo": "hi"})
    ]

    def kinds() -> list[str]:  # the timeline leaves in batches, a few ms after the result
        return [e.payload.kind for e in stack.events if e.payload.task_id == task.task_id]

    await assert_eventually(lambda: kinds().count("llm.call") == 2, message=f"{kinds()}")
    assert kinds().count("tool.call") == 1


async def test_structured_answer_is_validated_and_a_bad_one_sent_back(stack: Stack) -> None:
    ref = await register_agent(stack, output_schema=CLASSIFICATION, tools=[])
    good = {"category": "fraud", "confidence": 0.9}
    provider = ScriptedProvider([answer({"category": "chargeback", "confidence": 2}), answer(good)])
    await start(stack, provider)
    task = await stack.add_task(ref, {"prompt": "Classify"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "succeeded", result.error
    assert result.output == good  # structured: downstream `when` reads its fields
    feedback = provider.requests[1].messages[-1]
    assert feedback["role"] == "user"
    assert "category" in feedback["content"]
    assert "chargeback" in feedback["content"]
    assert provider.requests[0].response_schema == CLASSIFICATION


async def test_an_answer_that_never_matches_the_schema_fails_the_task_clearly(
    stack: Stack,
) -> None:
    ref = await register_agent(stack, output_schema=CLASSIFICATION, tools=[])
    provider = ScriptedProvider([answer("not json at all")] * 3)
    await start(stack, provider, agent_schema_retries=2)
    task = await stack.add_task(ref, {"prompt": "Classify"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "agent_invalid_output"
    assert "output_schema" in result.error.message
    assert "not JSON" in result.error.message
    assert len(provider.requests) == 3  # first answer + 2 sent back, then no more


async def test_a_tool_outside_the_allowlist_is_refused_and_recorded(stack: Stack) -> None:
    ref = await register_agent(stack, tools=["echo"])
    secret = EchoTool(name="delete_everything")
    provider = ScriptedProvider(
        [calls(("delete_everything", {"text": "x"})), answer("I could not do that.")]
    )
    await start(stack, provider, secret)
    task = await stack.add_task(ref, {"prompt": "Clean up"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "succeeded"
    assert secret.calls == []  # never executed
    assert [t.name for t in provider.requests[0].tools] == ["echo"]  # never offered
    refusal = provider.requests[1].messages[-1]["content"]
    assert "not allowed for agent 'helper'" in refusal
    (row,) = await tool_rows(stack, task.task_id)
    assert (row.tool, row.status) == ("delete_everything", "refused")
    assert metric("cadenza_agent_tool_calls_total", agent="helper", status="refused") >= 1


async def test_tool_errors_and_bad_arguments_are_observations_not_failures(stack: Stack) -> None:
    ref = await register_agent(stack)
    provider = ScriptedProvider(
        [calls(("echo", {"txt": "typo"})), calls(("echo", {"text": "ok"})), answer("done")]
    )
    echo = await start(stack, provider)
    task = await stack.add_task(ref, {"prompt": "go"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "succeeded"
    assert result.output == "done"
    assert echo.calls == [{"text": "ok"}]
    observation = provider.requests[1].messages[-1]["content"]
    assert "invalid arguments" in observation
    assert "text" in observation
    statuses = [t.status for t in await tool_rows(stack, task.task_id)]
    assert statuses == ["invalid_args", "ok"]


async def test_max_iterations_forces_a_final_answer_on_the_last_turn(stack: Stack) -> None:
    ref = await register_agent(stack, max_iterations=2)
    provider = ScriptedProvider([calls(("echo", {"text": "1"})), answer("final")])
    await start(stack, provider)
    task = await stack.add_task(ref, {"prompt": "loop"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "succeeded"
    assert result.output == "final"
    last = provider.requests[-1]
    assert last.tools == []
    assert last.tool_choice == "none"
    assert len(provider.requests) == 2


async def test_tool_choice_required_forces_the_first_call_then_lets_the_model_answer(
    stack: Stack,
) -> None:
    ref = await register_agent(stack, tool_choice="required")
    provider = ScriptedProvider(
        [calls(("echo", {"text": "x"})), calls(("echo", {"text": "y"})), answer("done")]
    )
    await start(stack, provider)
    task = await stack.add_task(ref, {"prompt": "ground yourself first"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "succeeded", result.error
    assert [r.tool_choice for r in provider.requests] == ["required", "auto", "auto"]


async def test_tool_choice_required_ignored_by_the_server_is_asked_again(stack: Stack) -> None:
    """A server that ignores `tool_choice` (llama.cpp) answers at once; the loop does not
    accept that answer but asks again for a tool call."""
    ref = await register_agent(stack, tool_choice="required")
    provider = ScriptedProvider(
        [answer("ungrounded guess"), calls(("echo", {"text": "x"})), answer("grounded")]
    )
    echo = await start(stack, provider)
    task = await stack.add_task(ref, {"prompt": "ground yourself first"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "succeeded", result.error
    assert result.output == "grounded"
    assert echo.calls == [{"text": "x"}]
    assert [r.tool_choice for r in provider.requests] == ["required", "required", "auto"]
    feedback = provider.requests[1].messages[-1]
    assert feedback["role"] == "user"
    assert "must call one of the tools (echo)" in feedback["content"]


async def test_tool_choice_required_never_honoured_fails_after_bounded_asks(
    stack: Stack,
) -> None:
    ref = await register_agent(stack, tool_choice="required")
    provider = ScriptedProvider([answer("no tools for me")] * 3)
    await start(stack, provider, agent_schema_retries=2)
    task = await stack.add_task(ref, {"prompt": "go"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "agent_no_tool_call"
    assert "without calling a tool 3 time(s)" in result.error.message
    assert len(provider.requests) == 3


async def test_a_free_text_answer_with_tools_offered_gets_an_answer_turn_without_tools(
    stack: Stack,
) -> None:
    """Providers send the schema only on turns without tools; a free-text answer to a tool
    turn is sent back and the next turn offers no tools, so the schema is enforced."""
    ref = await register_agent(stack, output_schema=CLASSIFICATION, tools=["echo"])
    good = {"category": "psp_outage", "confidence": 0.7}
    provider = ScriptedProvider(
        [calls(("echo", {"text": "look"})), answer("It is an outage."), answer(good)]
    )
    await start(stack, provider)
    task = await stack.add_task(ref, {"prompt": "Classify"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "succeeded", result.error
    assert result.output == good
    assert [len(r.tools) for r in provider.requests] == [1, 1, 0]
    assert [r.tool_choice for r in provider.requests] == ["auto", "auto", "none"]
    assert provider.requests[2].response_schema == CLASSIFICATION
    assert "not JSON" in provider.requests[2].messages[-1]["content"]


@BOTH_STACKS
async def test_a_crash_mid_loop_resumes_from_the_checkpoint(stack: Stack) -> None:
    """The provider fails (retryably) on the second turn: the worker's retry resumes the
    checkpointed loop — the first turn and the completed tool call are not made again."""
    ref = await register_agent(stack)
    provider = ScriptedProvider(
        [calls(("echo", {"text": "once"})), crash_once(), answer("resumed fine")]
    )
    echo = await start(stack, provider)
    resumes = metric("cadenza_agent_resumes_total", agent="helper")
    task = await stack.add_task(ref, {"prompt": "go"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "succeeded"
    assert result.output == "resumed fine"
    assert result.tries == 2
    assert echo.calls == [{"text": "once"}]
    assert len(provider.requests) == 3  # turn 0, turn 1 (crashed), turn 1 again
    assert provider.requests[1].messages == provider.requests[2].messages
    rows = await llm_rows(stack, task.task_id)
    assert [(r.turn, r.status) for r in rows] == [(0, "ok"), (1, "error")]
    assert metric("cadenza_agent_resumes_total", agent="helper") == resumes + 1


async def test_a_stop_between_a_steps_writes_and_its_checkpoint_resumes_the_loop(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tools step's writes were saved (pending writes) but its checkpoint was not: the
    attempt stopped between the two. The next try must go on from there (the tool's result
    applied, not called again), not take the loop for finished and answer nothing."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    real_put = AsyncSqliteSaver.aput
    puts: list[int] = []

    async def put(self: AsyncSqliteSaver, *args: Any, **kwargs: Any) -> Any:
        step = args[2]["step"]  # -1 the input, 0 start, 1 model turn 0, 2 the tools, …
        puts.append(step)
        if step == 2 and puts.count(2) == 1:
            raise crash_once("checkpoint write lost")
        return await real_put(self, *args, **kwargs)

    monkeypatch.setattr(AsyncSqliteSaver, "aput", put)
    ref = await register_agent(stack)
    provider = ScriptedProvider(
        [calls(("echo", {"text": "once"})), answer("early"), answer("after the stop")]
    )
    echo = await start(stack, provider)
    task = await stack.add_task(ref, {"prompt": "go"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "succeeded"
    assert result.tries == 2
    assert result.output in {"early", "after the stop"}  # turn 1 may run before the stop
    assert echo.calls == [{"text": "once"}]


async def test_a_redispatched_attempt_continues_the_lost_attempts_loop(stack: Stack) -> None:
    """Attempt 1's worker vanished after a tool call; attempt 2 starts from its checkpoint."""
    ref = await register_agent(stack)
    first = ScriptedProvider([calls(("echo", {"text": "one"})), crash_once("worker lost")])
    echo = EchoTool()
    worker = await stack.start_worker(tools=ToolRegistry([echo]), llm=ScriptedRegistry(first))
    task = await stack.add_task(ref, {"prompt": "go"}, kind="agent", max_attempts=1)
    await stack.dispatch(task)
    failed = await stack.result(task)
    assert failed.status == "failed"  # attempt 1 gave up after its turn-1 crash
    await worker.stop()

    second = ScriptedProvider([answer("picked up where it stopped")])
    await stack.start_worker(tools=ToolRegistry([echo]), llm=ScriptedRegistry(second))
    retry = await stack.redispatch(task)
    result = await stack.result(retry)
    assert result.status == "succeeded"
    assert result.output == "picked up where it stopped"
    assert echo.calls == [{"text": "one"}]
    (request,) = second.requests
    assert [m["role"] for m in request.messages] == ["system", "user", "assistant", "tool"]


async def test_handoff_ends_the_loop_with_the_target_and_the_conversation(stack: Stack) -> None:
    await register_agent(stack, name="tier2", tools=[])
    ref = await register_agent(stack, name="tier1", handoffs=["tier2"])
    provider = ScriptedProvider([calls(("handoff_to_tier2", {"reason": "needs an expert"}))])
    await start(stack, provider)
    task = await stack.add_task(ref, {"prompt": "My card was charged twice"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "succeeded", result.error
    handoff = result.handoff
    assert handoff is not None
    assert (handoff.agent, handoff.reason, handoff.from_agent) == (
        "tier2",
        "needs an expert",
        "tier1",
    )
    assert any("charged twice" in str(m.get("content")) for m in handoff.messages)
    assert "handoff_to_tier2" in [t.name for t in provider.requests[0].tools]


async def test_an_unknown_agent_fails_the_task_without_retrying(stack: Stack) -> None:
    provider = ScriptedProvider([])
    await start(stack, provider)
    task = await stack.add_task("nobody@3", {"prompt": "hi"}, kind="agent")
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "unknown_agent"
    assert "nobody@3" in result.error.message
    assert result.tries == 1

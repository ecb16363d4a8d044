"""A fork's agent overrides (`TaskReady.agent_overrides`) replace the pinned definition's
system prompt and model for that task only."""

from __future__ import annotations

from agent_support import ScriptedProvider, ScriptedRegistry, answer, register_agent
from cadenza_worker import ToolRegistry
from worker_support import BOTH_STACKS, Stack


@BOTH_STACKS
async def test_overrides_replace_the_system_prompt_and_model_of_one_task(stack: Stack) -> None:
    ref = await register_agent(stack)
    provider = ScriptedProvider([answer("plain"), answer("terse")])
    await stack.start_worker(tools=ToolRegistry([]), llm=ScriptedRegistry(provider))

    plain = await stack.add_task(ref, {"prompt": "Say hi"}, kind="agent")
    await stack.dispatch(plain)
    assert (await stack.result(plain)).output == "plain"

    forked = await stack.add_task(ref, {"prompt": "Say hi"}, kind="agent")
    overrides = {"system_prompt": "Answer in one word.", "model": "scripted:other"}
    await stack.dispatch(forked.model_copy(update={"agent_overrides": overrides}))
    assert (await stack.result(forked)).output == "terse"

    first, second = provider.requests
    assert (first.model, first.messages[0]["content"]) == ("m", "You help.")
    assert (second.model, second.messages[0]["content"]) == ("other", "Answer in one word.")

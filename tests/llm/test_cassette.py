from __future__ import annotations

import json
from pathlib import Path

import pytest
from cadenza_llm import (
    CassetteMissError,
    ChatRequest,
    ChatResponse,
    RecordingProvider,
    ReplayProvider,
    ToolCall,
    ToolSpec,
    Usage,
    request_key,
)

pytestmark = pytest.mark.unit


class ScriptedProvider:
    """A provider answering from a list, counting calls."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.closed = False

    @property
    def name(self) -> str:
        return "local"

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        answer = self.answers.pop(0)
        tool_calls = (
            [ToolCall(id="call_1", name="lookup", arguments={"id": answer})]
            if answer.startswith("tool:")
            else []
        )
        return ChatResponse(
            content=None if tool_calls else answer,
            tool_calls=tool_calls,
            usage=Usage(input_tokens=10, output_tokens=3),
            model=request.model,
            provider=self.name,
            finish_reason="tool_calls" if tool_calls else "stop",
            latency_ms=12.5 + self.calls,
        )

    async def aclose(self) -> None:
        self.closed = True


def ask(text: str, **extra: object) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "smollm2-135m", "messages": [{"role": "user", "content": text}], **extra}
    )


def test_key_is_deterministic_and_covers_every_request_field() -> None:
    base = ask("hello")
    assert request_key(base) == request_key(ask("hello"))
    assert len(request_key(base)) == 64
    tool = ToolSpec(name="lookup", parameters={"type": "object"})
    variants = [
        ask("hello!"),
        base.model_copy(update={"model": "other"}),
        base.model_copy(update={"tools": [tool]}),
        base.model_copy(update={"tools": [tool], "tool_choice": "required"}),
        base.model_copy(update={"response_schema": {"type": "object"}}),
        base.model_copy(update={"temperature": 0.5}),
        base.model_copy(update={"max_tokens": 10}),
        base.model_copy(update={"seed": 1}),
    ]
    keys = {request_key(v) for v in variants}
    assert len(keys) == len(variants)
    assert request_key(base) not in keys


def test_key_reads_every_uuid_as_the_same_placeholder() -> None:
    """Document and run ids differ on every run; the conversation around them does not."""
    hit = '{"hits": [{"document_id": "%s", "text": "45 days"}]}'
    one = ask(hit % "5166ab96-12d1-44fe-bc94-84011122b14b")
    other = ask(hit % "0f0e0d0c-0b0a-4908-8706-050403020100")
    assert request_key(one) == request_key(other)
    assert request_key(one) != request_key(ask(hit % "not-a-uuid"))
    assert request_key(one) != request_key(ask(hit.replace("45", "30") % "x"))


async def test_record_then_replay_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cassette.json"
    inner = ScriptedProvider("tool:42", "the answer")
    recorder = RecordingProvider(inner, path)
    first = await recorder.chat(ask("find 42"))
    second = await recorder.chat(ask("summarise"))
    await recorder.aclose()
    assert inner.closed
    assert recorder.name == "local"

    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert {e["key"] for e in data["entries"]} == {
        request_key(ask("find 42")),
        request_key(ask("summarise")),
    }
    assert all("last_user=" in e["summary"] for e in data["entries"])

    replay = ReplayProvider(path)
    assert replay.name == "replay"
    assert await replay.chat(ask("find 42")) == first
    assert await replay.chat(ask("summarise")) == second
    # replay is stable: the same request answers the same again
    assert await replay.chat(ask("find 42")) == first


async def test_repeated_request_with_different_answers_replays_in_order(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    recorder = RecordingProvider(ScriptedProvider("a", "a", "b"), path)
    for _ in range(3):
        await recorder.chat(ask("again"))
    entries = json.loads(path.read_text())["entries"]
    # the identical second answer is not stored twice
    assert [(e["occurrence"], e["response"]["content"]) for e in entries] == [(0, "a"), (1, "b")]
    replay = ReplayProvider(path)
    answers = [(await replay.chat(ask("again"))).content for _ in range(4)]
    assert answers == ["a", "b", "b", "b"]


async def test_rerecording_replaces_entries_instead_of_growing(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    await RecordingProvider(ScriptedProvider("old"), path).chat(ask("q"))
    await RecordingProvider(ScriptedProvider("new"), path).chat(ask("q"))
    entries = json.loads(path.read_text())["entries"]
    assert [e["response"]["content"] for e in entries] == ["new"]


async def test_miss_is_an_error_naming_key_and_request(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    await RecordingProvider(ScriptedProvider("x"), path).chat(ask("known"))
    request = ask("never recorded question", tools=[ToolSpec(name="lookup")])
    with pytest.raises(CassetteMissError) as caught:
        await ReplayProvider(path).chat(request)
    error = caught.value
    assert error.key == request_key(request)
    assert error.code == "cassette_miss"
    assert not error.retryable
    assert request_key(request) in str(error)
    assert "never recorded question" in str(error)
    assert "tools=[lookup]" in str(error)
    assert "CADENZA_LLM_CASSETTE_MODE=record" in str(error)


async def test_missing_cassette_file_is_a_miss_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(CassetteMissError):
        await ReplayProvider(tmp_path / "absent.json").chat(ask("q"))


async def test_foreign_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"something": "else"}')
    with pytest.raises(ValueError, match="not a version-1 cassette"):
        await ReplayProvider(path).chat(ask("q"))

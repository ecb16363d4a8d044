from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from cadenza_llm import (
    AuthError,
    BadRequestError,
    ChatRequest,
    ChatResponse,
    InvalidOutputError,
    OpenAICompatibleProvider,
    ProviderUnavailableError,
    RateLimitedError,
    ToolCall,
    ToolSpec,
    assistant_message,
    tool_message,
)
from cadenza_llm.openai_compatible import parse_retry_after
from llm_support import SECRET, FakeOpenAI, SleepRecorder, completion, provider_settings, sse

pytestmark = pytest.mark.unit

WEATHER = ToolSpec(
    name="get_weather",
    description="Weather of a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def request(**overrides: object) -> ChatRequest:
    values: dict[str, object] = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
    }
    values.update(overrides)
    return ChatRequest.model_validate(values)


def make(fake: FakeOpenAI, sleeps: SleepRecorder, **settings: object) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        "openai", provider_settings(**settings), transport=fake.transport(), sleep=sleeps
    )


async def test_plain_completion_sends_key_and_maps_usage(
    fake: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    provider = make(fake, sleeps)
    fake.script(completion("hello there"))
    response = await provider.chat(request(max_tokens=20, seed=7))
    assert response.content == "hello there"
    assert response.tool_calls == []
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 7)
    assert (response.provider, response.model, response.finish_reason) == (
        "openai",
        "gpt-test-2024",
        "stop",
    )
    assert response.latency_ms > 0
    sent = fake.requests[0]
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    body = fake.bodies()[0]
    assert body == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.0,
        "max_tokens": 20,
        "seed": 7,
    }
    await provider.aclose()


async def test_tool_calls_and_response_schema_are_sent_and_parsed(
    fake: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    provider = make(fake, sleeps)
    fake.script(
        completion(
            None,
            finish_reason="tool_calls",
            tool_calls=[
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        )
    )
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    response = await provider.chat(
        request(tools=[WEATHER], tool_choice="required", response_schema=schema)
    )
    assert response.content is None
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("call_abc", "get_weather", {"city": "Paris"})
    ]
    body = fake.bodies()[0]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    assert body["tool_choice"] == "required"
    # The schema is sent only when the model is to answer (no tools offered): llama.cpp
    # would otherwise answer the schema at once instead of calling a tool.
    assert "response_format" not in body


@pytest.mark.parametrize(
    ("tools", "schema_with_tools", "sent"),
    [([], False, True), ([WEATHER], False, False), ([WEATHER], True, True)],
)
async def test_the_output_schema_is_sent_only_on_answer_turns(
    fake: FakeOpenAI,
    sleeps: SleepRecorder,
    tools: list[ToolSpec],
    schema_with_tools: bool,
    sent: bool,
) -> None:
    provider = make(fake, sleeps, schema_with_tools=schema_with_tools)
    fake.script(completion('{"answer": "x"}'))
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    await provider.chat(request(tools=tools, response_schema=schema))
    body = fake.bodies()[0]
    expected = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    assert body.get("response_format") == (expected if sent else None)
    assert ("tools" in body) == bool(tools)


async def test_tool_turns_are_sent_in_openai_shape(fake: FakeOpenAI, sleeps: SleepRecorder) -> None:
    provider = make(fake, sleeps)
    call = ToolCall(id="call_9", name="get_weather", arguments={"city": "Oslo"})
    previous = ChatResponse(content=None, tool_calls=[call], model="m", provider="openai")
    fake.script(completion("It is sunny."))
    await provider.chat(
        request(
            tools=[WEATHER],
            messages=[
                {"role": "user", "content": "weather in Oslo?"},
                assistant_message(previous),
                tool_message(call, "sunny"),
            ],
        )
    )
    sent = fake.bodies()[0]["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_9",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            }
        ],
    }
    assert sent[2] == {"role": "tool", "tool_call_id": "call_9", "content": "sunny"}


async def test_tool_choice_none_sends_no_tools(fake: FakeOpenAI, sleeps: SleepRecorder) -> None:
    provider = make(fake, sleeps)
    fake.script(completion("ok"))
    await provider.chat(request(tools=[WEATHER], tool_choice="none"))
    assert "tools" not in fake.bodies()[0]
    assert "tool_choice" not in fake.bodies()[0]


async def test_malformed_tool_arguments_are_invalid_output(
    fake: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    provider = make(fake, sleeps)
    fake.script(
        completion(
            None,
            tool_calls=[{"id": "c", "function": {"name": "get_weather", "arguments": "{city:"}}],
        )
    )
    with pytest.raises(InvalidOutputError, match="get_weather") as caught:
        await provider.chat(request(tools=[WEATHER]))
    assert caught.value.code == "llm_invalid_output"
    assert not caught.value.retryable


async def test_streaming_assembles_content_tool_calls_and_usage(
    fake: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    provider = make(fake, sleeps, stream=True)
    base = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-stream"}
    fake.script(
        sse(
            [
                {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
                {**base, "choices": [{"index": 0, "delta": {"content": "Let me "}}]},
                {**base, "choices": [{"index": 0, "delta": {"content": "check."}}]},
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "id": "call_1",
                                        "type": "function",
                                        "function": {"name": "get_weather", "arguments": ""},
                                    }
                                ]
                            },
                        }
                    ],
                },
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]
                            },
                        }
                    ],
                },
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [
                                    {"index": 0, "function": {"arguments": 'ty": "Oslo"}'}},
                                    {
                                        "index": 1,
                                        "id": "call_2",
                                        "function": {"name": "get_weather", "arguments": "{}"},
                                    },
                                ]
                            },
                        }
                    ],
                },
                {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
                {**base, "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 12}},
            ]
        )
    )
    response = await provider.chat(request(tools=[WEATHER]))
    body = fake.bodies()[0]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert response.content == "Let me check."
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("call_1", "get_weather", {"city": "Oslo"}),
        ("call_2", "get_weather", {}),
    ]
    assert response.finish_reason == "tool_calls"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (40, 12)
    assert response.model == "gpt-stream"


async def test_stream_cut_short_is_retried(fake: FakeOpenAI, sleeps: SleepRecorder) -> None:
    provider = make(fake, sleeps, stream=True)
    chunk = {"model": "m", "choices": [{"index": 0, "delta": {"content": "par"}}]}
    done = {
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}],
    }
    fake.script(sse([chunk], done=False), sse([done]))
    response = await provider.chat(request())
    assert response.content == "ok"
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), ("0.25", 0.25), ("-5", 0.0), ("soon", None), (None, None)],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after(header, now=now) == 7.0
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now=now) == 0


async def test_429_honours_retry_after_then_succeeds(
    fake: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    provider = make(fake, sleeps)
    fake.script(
        httpx.Response(429, headers={"retry-after": "3"}, json={"error": {"message": "slow down"}}),
        httpx.Response(
            503,
            headers={
                "retry-after": format_datetime(
                    datetime.now(UTC) + timedelta(seconds=30), usegmt=True
                )
            },
            text="busy",
        ),
        completion("finally"),
    )
    response = await provider.chat(request())
    assert response.content == "finally"
    assert len(fake.requests) == 3
    assert sleeps.waits[0] == 3.0
    assert 28.0 <= sleeps.waits[1] <= 30.0  # HTTP-date form, computed from now


async def test_retry_after_is_capped(fake: FakeOpenAI, sleeps: SleepRecorder) -> None:
    provider = make(fake, sleeps, max_retry_after_s=5.0)
    fake.script(httpx.Response(429, headers={"retry-after": "3600"}), completion())
    await provider.chat(request())
    assert sleeps.waits == [5.0]


async def test_without_retry_after_backoff_is_exponential_with_jitter(
    fake: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    provider = make(fake, sleeps, max_attempts=4, initial_backoff_s=0.5, max_backoff_s=8.0)
    fake.script(
        httpx.Response(500, text="boom"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        completion("up"),
    )
    response = await provider.chat(request())
    assert response.content == "up"
    assert len(sleeps.waits) == 3
    # initial * 2**n plus up to `initial` of jitter
    for n, wait in enumerate(sleeps.waits):
        assert 0.5 * 2**n <= wait <= 0.5 * 2**n + 0.5


async def test_retries_are_bounded_and_last_error_raised(
    fake: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    provider = make(fake, sleeps, max_attempts=3)
    fake.script(*[httpx.Response(429, headers={"retry-after": "1"}) for _ in range(3)])
    with pytest.raises(RateLimitedError) as caught:
        await provider.chat(request())
    assert caught.value.code == "llm_rate_limited"
    assert caught.value.retryable
    assert len(fake.requests) == 3
    assert sleeps.waits == [1.0, 1.0]


async def test_timeouts_become_retryable_unavailable(
    fake: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    provider = make(fake, sleeps, max_attempts=2)
    fake.script(httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"))
    with pytest.raises(ProviderUnavailableError, match="timed out") as caught:
        await provider.chat(request())
    assert caught.value.code == "llm_unavailable"
    assert caught.value.retryable


async def test_400_is_not_retried_and_carries_the_server_message(
    fake: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    provider = make(fake, sleeps)
    fake.script(
        httpx.Response(
            400,
            json={"error": {"message": "'messages' must contain the word 'json'", "type": "x"}},
        )
    )
    with pytest.raises(BadRequestError) as caught:
        await provider.chat(request())
    assert "HTTP 400" in str(caught.value)
    assert "must contain the word 'json'" in str(caught.value)
    assert caught.value.code == "llm_bad_request"
    assert not caught.value.retryable
    assert len(fake.requests) == 1
    assert sleeps.waits == []


async def test_api_key_never_leaks_into_errors_or_logs(
    fake: FakeOpenAI, sleeps: SleepRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = make(fake, sleeps, max_attempts=2)
    echo = {"error": {"message": f"Incorrect API key provided: {SECRET}."}}
    fake.script(httpx.Response(500, json=echo), httpx.Response(401, json=echo))
    with pytest.raises(AuthError) as caught:
        await provider.chat(request())
    assert caught.value.code == "llm_auth"
    texts = [str(caught.value), repr(caught.value), json.dumps(caught.value.to_dict()), caplog.text]
    assert "Incorrect API key provided: ***" in str(caught.value)
    for text in texts:
        assert SECRET not in text
    assert SECRET not in repr(provider.settings)
    assert "retrying" in caplog.text  # the retry was logged, without the key

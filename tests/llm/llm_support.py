"""Helpers of the LLM tests: a scripted fake OpenAI-compatible server (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from cadenza_llm import OpenAIProviderSettings

SECRET = "sk-test-SECRET-0123456789abcdef"

Reply = httpx.Response | Callable[[httpx.Request], httpx.Response] | Exception


class FakeOpenAI:
    """Answers each POST /chat/completions with the next scripted reply; records requests."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[httpx.Request] = []

    def script(self, *replies: Reply) -> FakeOpenAI:
        self.replies.extend(replies)
        return self

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(request)
        return reply

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


class SleepRecorder:
    """Stands in for asyncio.sleep: records each retry wait instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def completion(
    content: str | None = "hello",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    model: str = "gpt-test-2024",
) -> httpx.Response:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        },
    )


def sse(chunks: list[dict[str, Any]], *, done: bool = True) -> httpx.Response:
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks]
    if done:
        lines.append("data: [DONE]\n\n")
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content="".join(lines).encode()
    )


def provider_settings(**overrides: Any) -> OpenAIProviderSettings:
    values: dict[str, Any] = {
        "base_url": "http://fake-openai.test/v1",
        "api_key": SECRET,
        "max_attempts": 4,
        "initial_backoff_s": 0.5,
        "max_backoff_s": 8.0,
    }
    values.update(overrides)
    return OpenAIProviderSettings(**values)

"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, LiteLLM) over httpx.

Retryable failures (429, 408, 5xx, timeouts, connection errors) are retried with exponential
backoff and jitter, honouring ``Retry-After``; other 4xx fail at once with the server's message.
The API key only ever travels in the ``Authorization`` header: it is redacted from every
error text and never logged or put on a span."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential_jitter

from .errors import (
    AuthError,
    BadRequestError,
    InvalidOutputError,
    LLMError,
    ProviderUnavailableError,
    RateLimitedError,
)
from .settings import OpenAIProviderSettings
from .types import ChatRequest, ChatResponse, ToolCall, Usage

log = logging.getLogger("cadenza.llm.openai")

RETRYABLE_STATUS = frozenset({408, 429})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


class RetryAfterOrBackoff(wait_base):
    """Wait what the server asked for (capped), else exponential backoff with jitter."""

    def __init__(self, backoff: wait_base, max_retry_after_s: float) -> None:
        self.backoff = backoff
        self.max_retry_after_s = max_retry_after_s

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(min(retry_after, self.max_retry_after_s))
        return float(self.backoff(retry_state))


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, LLMError) and error.retryable


class OpenAICompatibleProvider:
    """A named OpenAI-compatible endpoint. ``transport``/``sleep`` exist for tests."""

    def __init__(
        self,
        name: str,
        settings: OpenAIProviderSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._name = name
        self.settings = settings
        self._transport = transport
        self._sleep = sleep or asyncio.sleep
        self._client: httpx.AsyncClient | None = None
        self._key = settings.api_key.get_secret_value() if settings.api_key else ""

    @property
    def name(self) -> str:
        return self._name

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
            self._client = httpx.AsyncClient(
                base_url=self.settings.base_url,
                headers=headers,
                timeout=self.settings.timeout_s,
                transport=self._transport,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def chat(self, request: ChatRequest) -> ChatResponse:
        started = time.perf_counter()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_attempts),
            wait=RetryAfterOrBackoff(
                wait_exponential_jitter(
                    multiplier=self.settings.initial_backoff_s,
                    max=self.settings.max_backoff_s,
                    jitter=self.settings.initial_backoff_s,
                ),
                self.settings.max_retry_after_s,
            ),
            retry=retry_if_exception(_is_retryable),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        payload = self._payload(request)
        async for attempt in retrying:
            with attempt:
                if self.settings.stream:
                    body = await self._post_streaming(payload)
                else:
                    body = await self._post(payload)
        response = self._to_response(request, body)
        response.latency_ms = (time.perf_counter() - started) * 1000
        return response

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "llm provider %s attempt %d failed (%s); retrying in %.2fs",
            self._name,
            state.attempt_number,
            getattr(error, "code", type(error).__name__),
            wait,
        )

    # -- request ------------------------------------------------------------------------

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": [_wire_message(m) for m in request.messages],
            "temperature": request.temperature,
        }
        if request.tools and request.tool_choice != "none":
            payload["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in request.tools
            ]
            payload["tool_choice"] = request.tool_choice
        if request.response_schema is not None and (
            "tools" not in payload or self.settings.schema_with_tools
        ):
            # Only when the model is to answer: a server that applies the schema as a grammar
            # (llama.cpp) to a turn that also offers tools makes the model answer the schema
            # at once, never calling a tool. The agent loop asks for the answer in the schema
            # on a turn without tools when a free-text answer does not match it.
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": request.response_schema},
            }
        if request.max_tokens is not None:
            payload["max_tokens"] = request.max_tokens
        if request.seed is not None:
            payload["seed"] = request.seed
        if self.settings.stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return payload

    async def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self._transport_errors("request"):
            response = await self._http().post("/chat/completions", json=payload)
        if response.status_code >= 400:
            raise self._status_error(response)
        try:
            body = response.json()
        except ValueError as exc:
            raise InvalidOutputError(f"{self._name}: response is not JSON") from exc
        if not isinstance(body, dict):
            raise InvalidOutputError(f"{self._name}: response is not a JSON object")
        return body

    async def _post_streaming(self, payload: dict[str, Any]) -> dict[str, Any]:
        assembler = StreamAssembler()
        with self._transport_errors("stream"):
            async with self._http().stream("POST", "/chat/completions", json=payload) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._status_error(response)
                async for line in response.aiter_lines():
                    assembler.feed_line(line)
        if not assembler.done and assembler.finish_reason is None:
            raise ProviderUnavailableError(f"{self._name}: stream ended before it finished")
        return assembler.body()

    # -- errors -------------------------------------------------------------------------

    @contextmanager
    def _transport_errors(self, what: str) -> Iterator[None]:
        """Timeouts and connection failures -> retryable ``ProviderUnavailableError``."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise ProviderUnavailableError(f"{self._name}: {what} timed out") from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailableError(
                f"{self._name}: {what} failed ({type(exc).__name__})"
            ) from exc

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _status_error(self, response: httpx.Response) -> LLMError:
        status = response.status_code
        detail = self._redact(_server_message(response))
        message = f"{self._name}: HTTP {status}: {detail}"
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status == 429:
            return RateLimitedError(message, retry_after=retry_after)
        if status >= 500 or status in RETRYABLE_STATUS:
            return ProviderUnavailableError(message, retry_after=retry_after)
        if status in (401, 403):
            return AuthError(message)
        return BadRequestError(message)

    # -- response -----------------------------------------------------------------------

    def _to_response(self, request: ChatRequest, body: dict[str, Any]) -> ChatResponse:
        choices = body.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            raise InvalidOutputError(f"{self._name}: response has no choices")
        choice = choices[0]
        message = choice.get("message") or {}
        usage = body.get("usage") or {}
        return ChatResponse(
            content=message.get("content"),
            tool_calls=[
                _tool_call(self._name, i, c) for i, c in enumerate(message.get("tool_calls") or [])
            ],
            usage=Usage(
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
            ),
            model=str(body.get("model") or request.model),
            provider=self._name,
            finish_reason=choice.get("finish_reason"),
            raw=body,
        )


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    """Tool results carry ``name`` for providers that render them as text (local); the OpenAI
    schema of a ``tool`` message has no such field, so strict servers would refuse it."""
    if message.get("role") == "tool" and "name" in message:
        return {k: v for k, v in message.items() if k != "name"}
    return message


def _server_message(response: httpx.Response) -> str:
    """The server's own explanation: OpenAI's ``error.message`` when present, else the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
        if body.get("detail"):
            return str(body["detail"])[:500]
    return json.dumps(body)[:500]


def _tool_call(provider: str, index: int, call: dict[str, Any]) -> ToolCall:
    function = call.get("function") or {}
    name = function.get("name") or ""
    raw = function.get("arguments")
    if isinstance(raw, dict):
        arguments = raw
    else:
        try:
            arguments = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            raise InvalidOutputError(
                f"{provider}: tool call {name!r} has arguments that are not JSON: {str(raw)[:200]}"
            ) from exc
    if not isinstance(arguments, dict):
        raise InvalidOutputError(f"{provider}: tool call {name!r} arguments are not an object")
    return ToolCall(id=call.get("id") or f"call_{index + 1}", name=name, arguments=arguments)


class StreamAssembler:
    """Builds a non-streaming response body from chat-completion SSE chunks: concatenates
    content deltas and tool-call deltas (by ``index``), keeps the final usage chunk."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.usage: dict[str, Any] | None = None
        self.done = False

    def feed_line(self, line: str) -> None:
        if not line.startswith("data:"):
            return  # blank separators, comments (": ping"), event names
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InvalidOutputError(f"stream chunk is not JSON: {data[:200]}") from exc
        if isinstance(chunk.get("error"), dict):
            raise ProviderUnavailableError(
                f"stream error: {chunk['error'].get('message', 'unknown')}"
            )
        self.feed(chunk)

    def feed(self, chunk: dict[str, Any]) -> None:
        self.model = chunk.get("model") or self.model
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.content.append(delta["content"])
            for part in delta.get("tool_calls") or []:
                call = self.calls.setdefault(
                    int(part.get("index", len(self.calls))),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = part.get("id") or call["id"]
                function = part.get("function") or {}
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def body(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.content) if self.content else None,
        }
        if self.calls:
            message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        body: dict[str, Any] = {
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage,
        }
        if self.model:
            body["model"] = self.model
        return body

"""Spans (OpenTelemetry GenAI semantic conventions) and Prometheus metrics for every chat call.

Prompt and response text go on spans only when ``capture_content`` is on; credentials never do
(providers keep keys in HTTP headers, which are not recorded)."""

from __future__ import annotations

import json
import logging
import time

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from prometheus_client import Counter, Histogram

from .provider import Provider
from .types import ChatRequest, ChatResponse, assistant_message

log = logging.getLogger("cadenza.llm")

REQUESTS = Counter(
    "cadenza_llm_requests_total",
    "LLM chat calls, by outcome (ok, or the error code).",
    ["provider", "model", "outcome"],
)
DURATION = Histogram(
    "cadenza_llm_request_duration_seconds",
    "Wall time of one LLM chat call, retries included.",
    ["provider", "model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
)
TOKENS = Counter(
    "cadenza_llm_tokens_total",
    "Tokens consumed by LLM chat calls (direction: input or output).",
    ["provider", "model", "direction"],
)


class InstrumentedProvider:
    """Wraps a provider: one CLIENT span ``chat <model>`` and the metrics per call."""

    def __init__(
        self, inner: Provider, *, capture_content: bool = False, tracer: Tracer | None = None
    ) -> None:
        self.inner = inner
        self.capture_content = capture_content
        self._tracer = tracer

    @property
    def name(self) -> str:
        return self.inner.name

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def chat(self, request: ChatRequest) -> ChatResponse:
        tracer = self._tracer or trace.get_tracer("cadenza.llm")
        provider, model = self.inner.name, request.model
        attributes: dict[str, str | int | float] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.request.temperature": request.temperature,
        }
        if request.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = request.max_tokens
        if request.seed is not None:
            attributes["gen_ai.request.seed"] = request.seed
        if self.capture_content:
            attributes["gen_ai.input.messages"] = json.dumps(request.messages, ensure_ascii=False)
        started = time.perf_counter()
        with tracer.start_as_current_span(
            f"chat {model}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,  # the status and error.type say enough
            set_status_on_exception=False,
        ) as span:
            try:
                response = await self.inner.chat(request)
            except Exception as exc:
                code = str(getattr(exc, "code", "error"))
                span.set_attribute("error.type", code)
                span.set_status(Status(StatusCode.ERROR, code))
                REQUESTS.labels(provider, model, code).inc()
                DURATION.labels(provider, model).observe(time.perf_counter() - started)
                log.warning("llm chat %s:%s failed: %s", provider, model, code)
                raise
            span.set_attribute("gen_ai.response.model", response.model)
            span.set_attribute("gen_ai.usage.input_tokens", response.usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", response.usage.output_tokens)
            if response.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [response.finish_reason])
            if self.capture_content:
                span.set_attribute(
                    "gen_ai.output.messages",
                    json.dumps([assistant_message(response)], ensure_ascii=False),
                )
        REQUESTS.labels(provider, model, "ok").inc()
        DURATION.labels(provider, model).observe(time.perf_counter() - started)
        TOKENS.labels(provider, model, "input").inc(response.usage.input_tokens)
        TOKENS.labels(provider, model, "output").inc(response.usage.output_tokens)
        log.debug(
            "llm chat %s:%s tokens=%d/%d latency=%.0fms",
            provider,
            model,
            response.usage.input_tokens,
            response.usage.output_tokens,
            response.latency_ms,
        )
        return response

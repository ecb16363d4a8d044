"""Pure ASGI middleware: request id, server span, request metrics, a last-resort 500
problem, and the request-body size limit.

Pure ASGI (not ``BaseHTTPMiddleware``) so the body stream is counted as it arrives and the
trace context stays attached for the whole request, including outbox staging.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from cadenza_runtime import is_outage
from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import metrics
from .problems import (
    RETRY_AFTER_S,
    InternalError,
    MalformedBody,
    PayloadTooLarge,
    StoreUnavailable,
    problem_response,
)

log = logging.getLogger("cadenza.gateway")
tracer = trace.get_tracer("cadenza.gateway")

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
# Probes and scrapes would drown real traces; they still count in the metrics.
_UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


# RFC 9110's methods plus PATCH: anything else a client sends is `_OTHER` in metric labels
# and span names (OpenTelemetry HTTP semantic conventions), so a client cannot mint label
# values (cardinality) with made-up verbs.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "_OTHER"


def route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label cardinality), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestTelemetryMiddleware:
    """Gives every request an id (honouring a sane incoming ``X-Request-Id``), a SERVER span
    continuing an incoming W3C ``traceparent``, and metrics by route template. Exceptions
    no handler turned into a response become a 500 problem here, so they are counted and
    traced like any other answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        incoming = headers.get(REQUEST_ID_HEADER.lower(), "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        method_sent = str(scope["method"])
        method = method_label(method_sent)
        path = scope.get("path", "")
        traced = path not in _UNTRACED_PATHS
        parent = propagate.extract(dict(headers.items())) if traced else None
        span = (
            tracer.start_span(
                method,
                context=parent,
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": method,
                    **(
                        {"http.request.method_original": method_sent[:64]}
                        if method != method_sent
                        else {}
                    ),
                    "url.path": path,
                    "url.scheme": scope.get("scheme", "http"),
                    "user_agent.original": headers.get("user-agent", ""),
                    "cadenza.request_id": request_id,
                },
            )
            if traced
            else trace.INVALID_SPAN
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        status = 500
        response_started = False

        first_byte: float | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started, first_byte
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
                first_byte = time.perf_counter()
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        start = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            span.record_exception(exc)
            if response_started:
                log.exception(
                    "error in %s %s after the response began (request %s)", method, path, request_id
                )
                raise  # nothing left to say; the server closes the connection
            if is_outage(exc):
                # A backing store is away: nothing is wrong with the request, and nothing
                # half-done was committed (the route's transaction rolled back). Try later.
                log.warning(
                    "%s %s (request %s): backing store unavailable: %s: %s",
                    method,
                    path,
                    request_id,
                    type(exc).__name__,
                    exc,
                )
                metrics.UNAVAILABLE.inc()
                unavailable = StoreUnavailable(
                    "a backing store (database, Redis, object store or broker) is unavailable; "
                    "nothing was changed, retry after the indicated delay",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
                await problem_response(
                    unavailable.to_problem(path, request_id), unavailable.headers
                )(scope, receive, send_with_id)
                return
            log.exception("unhandled error in %s %s (request %s)", method, path, request_id)
            problem = InternalError(
                "the server failed to handle this request; it is logged under the request id"
            ).to_problem(path, request_id)
            await problem_response(problem)(scope, receive, send_with_id)
        finally:
            metrics.IN_FLIGHT.dec()
            route = route_template(scope)
            metrics.REQUESTS.labels(method, route, str(status)).inc()
            # Time to the response's first byte: what a caller waits for. For a stream
            # (SSE, WebSocket-less long polls) its whole life would swamp the histogram.
            answered = first_byte if first_byte is not None else time.perf_counter()
            metrics.REQUEST_LATENCY.labels(method, route).observe(answered - start)
            if traced:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
            context.detach(token)


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes``: at once when Content-Length says so, else while
    the body streams in (a missing or lying Content-Length cannot get more through).
    ``larger`` gives paths (full-match regexes, e.g. document uploads) a limit of their own."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, larger: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = [(re.compile(p), n) for p, n in (larger or {}).items()]

    def _limit(self, path: str) -> int:
        return next((n for p, n in self.larger if p.fullmatch(path)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        limit = self._limit(scope.get("path", ""))
        if declared is not None:
            early: Any = None
            if not declared.strip().isdigit():
                early = MalformedBody(f"invalid Content-Length header {declared[:40]!r}")
            elif int(declared) > limit:
                early = self._too_large(int(declared), limit)
            if early is not None:
                state = scope.get("state", {})
                problem = early.to_problem(scope.get("path"), state.get("request_id"))
                await problem_response(problem)(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._too_large(received, limit, at_least=True)
            return message

        await self.app(scope, limited_receive, send)

    def _too_large(self, size: int, limit: int, *, at_least: bool = False) -> PayloadTooLarge:
        more = "more than " if at_least else ""
        return PayloadTooLarge(
            f"request body of {more}{size} bytes exceeds the limit of {limit} bytes",
            limit_bytes=limit,
        )

"""The FastAPI application: routes, problem-details error handling, middleware."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cadenza_retrieval import Searcher
from cadenza_runtime import Resources, RunEventLog, RunEventRecorder
from cadenza_state import EnvelopeCipher
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .allowed_methods import allowed_methods
from .api import api_router
from .auth.jwt import JwtVerifier
from .auth.ratelimit import RateLimiter, RateLimitHeadersMiddleware
from .body_values import StorableValuesMiddleware
from .middleware import BodyLimitMiddleware, RequestTelemetryMiddleware
from .openapi_links import add_links
from .problems import PROBLEM_MEDIA_TYPE, handle_http_exception, handle_validation_error
from .rag import DOCUMENT_UPLOAD_PATH
from .settings import GatewaySettings

API_VERSION = "1"
DESCRIPTION = """\
Register workflow specs, start and cancel runs, and follow them.

Every error is an RFC 9457 problem (`application/problem+json`); spec and input problems
list each issue in `errors: [{field, task, code, message}]`.

Every /v1 operation needs a credential, `Authorization: Bearer <API key or OIDC token>`,
holding the scope the operation lists; the credential decides the tenant. See docs/api.md.

Every JSON or YAML body is refused (422, naming the field) when a string holds U+0000 or a
number is not a finite double (`NaN`, `Infinity`, `1e400`). Stored JSON returns the numbers
it was given. Links on creating answers lead to the operations on what they created.
"""


def create_app(
    resources: Resources,
    settings: GatewaySettings,
    *,
    owns_resources: bool = False,
    searcher: Searcher | None = None,
) -> FastAPI:
    """The gateway as an ASGI app on ``resources``.

    ``cadenza dev`` passes resources (and the searcher) shared with the other services;
    ``python -m cadenza_gateway`` passes ``owns_resources=True`` so the app's shutdown
    closes them. Without ``searcher`` one is opened on the first search (see `rag.py`).
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Feeds GET /v1/runs/{id}/events: run.events from Kafka into per-run Redis logs.
        recorder = RunEventRecorder(resources.bus, RunEventLog(resources.hot))
        await recorder.start()
        try:
            yield
        finally:
            await recorder.stop()
            if app.state.jwt_verifier is not None:
                await app.state.jwt_verifier.aclose()
            if app.state.owns_searcher:
                await app.state.searcher.aclose()
            if owns_resources:
                await resources.close()

    app = FastAPI(
        title="Cadenza API",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        **_without_native_telemetry(),
    )
    _problems_in_openapi(app)
    app.state.resources = resources
    app.state.settings = settings
    app.state.searcher = searcher
    app.state.owns_searcher = False
    app.state.cipher = EnvelopeCipher(settings.auth.secrets)
    app.state.jwt_verifier = JwtVerifier(settings.auth) if settings.auth.jwt_enabled else None
    app.state.rate_limiter = (
        RateLimiter(settings.auth, resources.hot) if RateLimiter.enabled(settings.auth) else None
    )
    app.include_router(api_router)
    app.add_exception_handler(HTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_middleware(StorableValuesMiddleware)  # inside the body limit: reads a capped body
    # Added last = outermost: telemetry sees every answer, including early 413s.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        # Document uploads: the file's own limit plus room for the multipart envelope.
        larger={DOCUMENT_UPLOAD_PATH: settings.max_document_bytes + 64 * 1024},
    )
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(RequestTelemetryMiddleware)
    return app


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        allowed = allowed_methods(request.app, request.url.path)
        if allowed:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
    return await handle_http_exception(request, exc)


def _without_native_telemetry() -> dict[str, Any]:
    """Recent FastAPI versions trace and meter requests themselves once a tracer provider
    is set; RequestTelemetryMiddleware already does (one SERVER span per request, Prometheus
    metrics), so switch the built-in one off where it exists."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


# Answers any operation may give that no route declares itself: the auth dependency's
# (secured operations), the body parser's and size limit's (operations with a body), and an
# outage's (every /v1 operation: a store is away, retry after `Retry-After`).
_SECURED_PROBLEMS = {
    "401": "No credential, or one that is unknown, malformed, revoked or expired.",
    "403": "The credential lacks the operation's scope (`required_scopes`).",
    "429": "Over the tenant's or credential's rate limit (`Retry-After`).",
}
_BODY_PROBLEMS = {
    "400": "The body is not well-formed (JSON/YAML syntax, encoding): `malformed-body`.",
    "413": "The body is larger than the gateway accepts.",
}
_API_PROBLEMS = {"503": "A backing store is unavailable; retry after `Retry-After`."}


def _problems_in_openapi(app: FastAPI) -> None:
    """FastAPI documents every response model as application/json; error answers are
    application/problem+json, so move their schemas there, and document the problems the
    middleware and the auth dependency answer for every operation they guard."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path, operations in schema.get("paths", {}).items():
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    extra: dict[str, str] = {}
                    if operation.get("security"):
                        extra |= _SECURED_PROBLEMS
                    if "requestBody" in operation:
                        extra |= _BODY_PROBLEMS
                    if path.startswith("/v1/") and operation.get("security"):
                        extra |= _API_PROBLEMS
                    for status, description in extra.items():
                        responses.setdefault(status, _problem_response(description))
                    for status, response in responses.items():
                        content = response.get("content", {})
                        if status[:1] in "45" and PROBLEM_MEDIA_TYPE in content:
                            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json", {})
            add_links(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }

"""RFC 9457 problem details: every error the gateway returns is one of these.

A problem is ``application/problem+json`` with ``type, title, status, detail, instance``,
the ``request_id`` and, for spec and input problems, ``errors: [{field, task, code,
message}]``. Typed problems subclass :class:`ProblemError`; they are Starlette
``HTTPException`` subclasses so FastAPI re-raises them untouched even from inside its own
body parsing (where the body-size limit fires).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

from cadenza_workflow import AgentValidationError, ErrorCode, SpecValidationError
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from . import metrics

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:cadenza:problem:"


class FieldProblem(BaseModel):
    """One problem in the request, named by field (and task, for workflow specs)."""

    field: str = Field(
        description="Where: a spec path such as `tasks[1].needs[0]`, `inputs.amount`, "
        "`query.limit`; '' for the whole document."
    )
    task: str | None = Field(default=None, description="Id of the task concerned, if any.")
    code: str = Field(description="Machine-readable code, e.g. `cycle`, `missing_input`.")
    message: str = Field(description="Human-readable message naming the task and field.")


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        default="about:blank",
        description="URI naming the problem type: `urn:cadenza:problem:<name>`, or "
        "`about:blank` for plain HTTP errors (see docs/api.md).",
    )
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(description="HTTP status code.")
    detail: str | None = Field(default=None, description="What went wrong this time.")
    instance: str | None = Field(default=None, description="The request path.")
    request_id: str | None = Field(default=None, description="X-Request-Id of the request.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="Every field-level problem (spec, inputs, parameters)."
    )


class ProblemError(HTTPException):
    """An error answered with problem details; subclasses fix status, type and title."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(status_code=self.status, detail=detail, headers=headers)
        self.errors = list(errors) if errors is not None else None
        self.extensions = extensions

    def to_problem(self, instance: str | None, request_id: str | None) -> Problem:
        return Problem(
            type=TYPE_PREFIX + self.slug,
            title=self.title,
            status=self.status,
            detail=self.detail,
            instance=instance,
            request_id=request_id,
            errors=self.errors,
            **self.extensions,
        )


class MalformedBody(ProblemError):
    status, slug, title = 400, "malformed-body", "Malformed request body"


class InvalidCursor(ProblemError):
    status, slug, title = 400, "invalid-cursor", "Invalid pagination cursor"


class WorkflowNotFound(ProblemError):
    status, slug, title = 404, "workflow-not-found", "Workflow not found"


class AgentNotFound(ProblemError):
    status, slug, title = 404, "agent-not-found", "Agent not found"


class TriggerNotFound(ProblemError):
    status, slug, title = 404, "trigger-not-found", "Trigger not found"


class ScheduleNotFound(ProblemError):
    status, slug, title = 404, "schedule-not-found", "Schedule not found"


class ScheduleExists(ProblemError):
    status, slug, title = 409, "schedule-exists", "Schedule already exists"


class MalformedEvent(ProblemError):
    status, slug, title = 400, "malformed-event", "Not a readable CloudEvent"


class EventRejected(ProblemError):
    status, slug, title = 422, "event-rejected", "Event rejected by a trigger"


class RunNotFound(ProblemError):
    status, slug, title = 404, "run-not-found", "Run not found"


class RunDeleted(ProblemError):
    """The run existed and was deleted by run history retention (docs/state.md)."""

    status, slug, title = 410, "run-deleted", "Run deleted"


class EvaluationNotFound(ProblemError):
    status, slug, title = 404, "evaluation-not-found", "Evaluation not found"


class RunFinished(ProblemError):
    status, slug, title = 409, "run-finished", "Run already finished"


class RunNotPaused(ProblemError):
    status, slug, title = 409, "run-not-paused", "Run is not paused"


class ApprovalNotFound(ProblemError):
    status, slug, title = 404, "approval-not-found", "Approval not found"


class ApprovalAnswered(ProblemError):
    status, slug, title = 409, "approval-answered", "Approval already answered"


class WrongHoldKind(ProblemError):
    status, slug, title = 409, "wrong-hold-kind", "Wrong kind of held call"


class DeadLetterNotFound(ProblemError):
    status, slug, title = 404, "dead-letter-not-found", "Dead letter not found"


class DeadLetterHandled(ProblemError):
    status, slug, title = 409, "dead-letter-handled", "Dead letter already handled"


class RunNotFinished(ProblemError):
    status, slug, title = 409, "run-not-finished", "Run not finished"


class PayloadTooLarge(ProblemError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(ProblemError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class InvalidRequest(ProblemError):
    status, slug, title = 422, "invalid-request", "Invalid request"


class InvalidWorkflow(ProblemError):
    status, slug, title = 422, "invalid-workflow", "Invalid workflow spec"


class InvalidAgent(ProblemError):
    status, slug, title = 422, "invalid-agent", "Invalid agent spec"


class InvalidInputs(ProblemError):
    status, slug, title = 422, "invalid-inputs", "Invalid run inputs"


class IdempotencyKeyReused(ProblemError):
    status, slug, title = 422, "idempotency-key-reused", "Idempotency key reused"


class NotReady(ProblemError):
    status, slug, title = 503, "not-ready", "Service not ready"


RETRY_AFTER_S = 5
"""What a 503 tells a caller to wait before retrying (seconds)."""


class StoreUnavailable(ProblemError):
    status, slug, title = 503, "unavailable", "A backing store is unavailable"


class InternalError(ProblemError):
    pass


# --------------------------------------------------------------------------- conversions


def spec_problem(
    exc: SpecValidationError,
    *,
    inputs: bool = False,
    malformed_is_400: bool = False,
    field_prefix: str = "",
) -> ProblemError:
    """Map a workflow library error: an unparseable document that is the body → 400
    ``malformed-body``; a run's inputs (``inputs=True``) → ``invalid-inputs``; any other
    spec problem → ``invalid-workflow`` (``invalid-agent`` for an agent definition)."""
    errors = [
        FieldProblem(
            field=_prefixed(field_prefix, e.field),
            task=e.task,
            code=str(e.code),
            message=e.message,
        )
        for e in exc.errors
    ]
    for e in exc.errors:
        metrics.SPEC_ERRORS.labels(str(e.code)).inc()
    if malformed_is_400 and {e.code for e in exc.errors} == {ErrorCode.INVALID_SYNTAX}:
        return MalformedBody(str(exc), errors=errors)
    if inputs:
        detail = str(exc).replace("invalid workflow spec", "invalid run inputs", 1)
        return InvalidInputs(detail, errors=errors)
    if isinstance(exc, AgentValidationError):
        return InvalidAgent(str(exc), errors=errors)
    return InvalidWorkflow(str(exc), errors=errors)


def _prefixed(prefix: str, field: str) -> str:
    if not prefix:
        return field
    if not field:
        return prefix
    return f"{prefix}{field}" if field.startswith("[") else f"{prefix}.{field}"


def _validation_field(loc: Sequence[str | int]) -> str:
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]  # body fields read as in the document: `inputs`, `spec`
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_VALIDATION_CODES = {"missing": "missing_field", "extra_forbidden": "unknown_field"}


def request_validation_problem(exc: RequestValidationError) -> ProblemError:
    """FastAPI's parameter/body validation → 422 problem (400 when the JSON is unreadable)."""
    raw = list(exc.errors())
    bad_json = [e for e in raw if e.get("type") == "json_invalid"]
    if bad_json:
        ctx = bad_json[0].get("ctx") or {}
        position = bad_json[0].get("loc", ("body", "?"))[-1]
        detail = f"JSON syntax error at position {position}: {ctx.get('error', 'invalid JSON')}"
        return MalformedBody(
            detail, errors=[FieldProblem(field="", code="invalid_syntax", message=detail)]
        )
    errors = []
    for e in raw:
        field = _validation_field(e.get("loc", ()))
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        where = f"field {field}" if field else "request body"
        errors.append(
            FieldProblem(
                field=field,
                code=_VALIDATION_CODES.get(str(e.get("type")), "invalid_field"),
                message=f"{where}: {msg[:1].lower()}{msg[1:]}",
            )
        )
    detail = "; ".join(e.message for e in errors) or "invalid request"
    return InvalidRequest(detail, errors=errors)


def http_problem(exc: HTTPException) -> Problem:
    """A plain HTTP error (unknown route, wrong method…) as an ``about:blank`` problem."""
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "Error"
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    if exc.status_code == 400:  # FastAPI's "There was an error parsing the body"
        cause = exc.__cause__
        if isinstance(cause, RecursionError):
            detail = "the JSON body nests too deeply"
        elif cause is not None:
            detail = f"the body is not valid JSON: {cause}"[:300]
        return Problem(
            type=TYPE_PREFIX + MalformedBody.slug,
            title=MalformedBody.title,
            status=400,
            detail=detail,
        )
    return Problem(title=phrase, status=exc.status_code, detail=detail)


# --------------------------------------------------------------------------- rendering


def problem_response(problem: Problem, headers: Mapping[str, str] | None = None) -> Response:
    # Absent members are omitted at the top level; inside `errors`, `task: null` stays.
    data = {k: v for k, v in problem.model_dump(mode="json").items() if v is not None}
    body = json.dumps(data, ensure_ascii=False)
    return Response(
        content=body.encode(),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, ProblemError):
        problem = exc.to_problem(request.url.path, _request_id(request))
    else:
        problem = http_problem(exc)
        problem.instance = request.url.path
        problem.request_id = _request_id(request)
    return problem_response(problem, exc.headers)


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problem = request_validation_problem(exc).to_problem(request.url.path, _request_id(request))
    return problem_response(problem)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem answers of a route."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {}},
        }
    return out

"""Typed task errors. Every failure a worker reports is a `TaskError{code,message,retryable}`;
these classes carry the codes that the worker itself raises."""

from __future__ import annotations

import asyncio
from typing import Any

from cadenza_events import (
    NonRetryableError,
    RetryableError,
    TaskError,
    Unavailable,
    is_retryable,
)
from pydantic import BaseModel, ValidationError

_MAX_MESSAGE = 2000


class TaskTimeoutError(RetryableError):
    """One try ran longer than the task's `timeout_s`."""

    code = "timeout"


class UnknownToolError(NonRetryableError):
    code = "unknown_tool"


class UnknownKindError(NonRetryableError):
    code = "unknown_kind"


class InvalidParamsError(NonRetryableError):
    code = "invalid_params"


class InvalidOutputError(NonRetryableError):
    """A tool returned something that is not JSON (cannot travel or be journaled)."""

    code = "invalid_output"


class ParamsUnavailableError(NonRetryableError):
    """The claim-checked params (`params_ref`) are missing or unreadable."""

    code = "params_unavailable"


def parse_params(model: type[BaseModel], params: dict[str, Any], tool: str) -> Any:
    """Validate a tool's params; a mistake in the workflow is never worth retrying."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise InvalidParamsError(f"{tool}: invalid params: {problems}") from exc


class StoreUnavailable(Unavailable):
    """One of the platform's own stores (Redis, PostgreSQL, MinIO) is away while an attempt
    uses it: the engine's calls, or a tool's through its `ToolContext`. That is no fault of
    the task, so it spends none of the task's tries: the attempt stops, the bus holds its
    task.ready until the store is back, and the attempt runs again (recorded effects
    replay). A tool's OWN services being away (an HTTP API, the search engine) stays the
    tool's retryable error, bounded by its retry policy."""

    code = "store_unavailable"
    store = "unknown"
    """Which store: ``redis``, ``postgresql`` or ``minio`` (the metric's label)."""


class JournalUnavailable(StoreUnavailable):
    """The effect journal's database is away (see `StoreUnavailable`)."""

    code = "journal_unavailable"
    store = "postgresql"


def should_retry(exc: BaseException) -> bool:
    """Retry errors that say they are retryable; never a cancellation (tenacity sees
    BaseException too, and a cancelled task must stop, not run again), nor a platform store
    being away (that pauses the whole message instead)."""
    return not isinstance(exc, (asyncio.CancelledError, StoreUnavailable)) and is_retryable(exc)


def to_task_error(exc: BaseException) -> TaskError:
    """Any exception → the serializable error a TaskResult carries."""
    code = getattr(exc, "code", None)
    if not isinstance(code, str) or not code:
        code = "timeout" if isinstance(exc, TimeoutError) else "tool_error"
    message = getattr(exc, "message", None)
    if not isinstance(message, str) or not message:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    details = getattr(exc, "details", None)
    return TaskError(
        code=code,
        message=message[:_MAX_MESSAGE],
        retryable=is_retryable(exc),
        details=details if isinstance(details, dict) else None,
    )

"""RFC 9457 problems as typed exceptions: ``except NotFound``, ``except RateLimited as e:
e.retry_after``. Every one keeps the whole problem (``problem``) and the status."""

from __future__ import annotations

import math
from typing import Any

import httpx


class CadenzaError(Exception):
    """Anything this client raises on purpose."""


class ApiError(CadenzaError):
    """The gateway answered an error (a problem+json body, or what came instead)."""

    def __init__(
        self, status: int, problem: dict[str, Any], *, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.problem = problem
        self.retry_after = retry_after
        super().__init__(format_problem(status, problem))

    @property
    def type(self) -> str:
        return str(self.problem.get("type", "about:blank"))

    @property
    def title(self) -> str:
        return str(self.problem.get("title", ""))

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail", ""))

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Field problems of a spec or input (`field`, `task`, `code`, `message`)."""
        return list(self.problem.get("errors") or [])

    @property
    def request_id(self) -> str | None:
        value = self.problem.get("request_id")
        return str(value) if value is not None else None


class BadRequest(ApiError):
    """400: a malformed body."""


class Unauthenticated(ApiError):
    """401: no credential, or an unknown, revoked or expired one."""


class Forbidden(ApiError):
    """403: the credential lacks the operation's scope (``required_scopes``)."""

    @property
    def required_scopes(self) -> list[str]:
        return [str(s) for s in self.problem.get("required_scopes") or []]


class NotFound(ApiError):
    """404: nothing of that name for the credential's tenant."""


class Conflict(ApiError):
    """409: the resource's state does not allow it (e.g. cancelling a finished run)."""


class PayloadTooLarge(ApiError):
    """413."""


class ValidationFailed(ApiError):
    """422: the request was read but is invalid; ``errors`` names each field."""


class RateLimited(ApiError):
    """429: over a rate limit or run quota; retry after ``retry_after`` seconds."""


class ServiceUnavailable(ApiError):
    """503: a backing store is away; retry after ``retry_after`` seconds."""


class ServerError(ApiError):
    """Any other 5xx."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
}


def format_problem(status: int, problem: dict[str, Any]) -> str:
    head = f"{status} {problem.get('title', 'error')}: {problem.get('detail', '')}"
    lines = [head.rstrip(": ")]
    for err in problem.get("errors") or []:
        lines.append(f"  - {err.get('field') or ''}: {err.get('message')}")
    return "\n".join(lines)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def error_for(response: httpx.Response) -> ApiError:
    """The typed exception of an error response (its body read already)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    problem = (
        body
        if isinstance(body, dict)
        else {"title": response.reason_phrase, "detail": response.text[:500]}
    )
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, problem, retry_after=_retry_after(response))


def raise_for_problem(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise error_for(response)

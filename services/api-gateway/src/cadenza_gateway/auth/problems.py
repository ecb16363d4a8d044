"""Authentication, authorisation and rate-limit problems (RFC 9457)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..problems import ProblemError


class Unauthenticated(ProblemError):
    """401: no credential, or one that is unknown, revoked, expired or badly signed."""

    status, slug, title = 401, "unauthenticated", "Authentication required"

    def __init__(self, detail: str, *, error: str = "invalid_token", **extensions: Any) -> None:
        challenge = 'Bearer realm="cadenza"'
        if error:
            challenge += f', error="{error}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge}, **extensions)


class InsufficientScope(ProblemError):
    """403: the credential is valid but lacks a scope the route needs."""

    status, slug, title = 403, "insufficient-scope", "Insufficient scope"

    def __init__(self, missing: Sequence[str]) -> None:
        needed = " ".join(missing)
        super().__init__(
            f"this operation needs the scope {needed!r}, which the credential does not have",
            headers={
                "WWW-Authenticate": f'Bearer realm="cadenza", error="insufficient_scope", '
                f'scope="{needed}"'
            },
            required_scopes=list(missing),
        )


class RateLimited(ProblemError):
    """429: the tenant's (or key's) request budget for the window is spent."""

    status, slug, title = 429, "rate-limited", "Too many requests"


class ApiKeyNotFound(ProblemError):
    status, slug, title = 404, "api-key-not-found", "API key not found"


class ScopeNotHeld(ProblemError):
    """403: a key may only be given scopes its creator holds."""

    status, slug, title = 403, "scope-not-held", "Scope not held"

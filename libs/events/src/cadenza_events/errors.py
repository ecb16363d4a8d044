"""Typed, serializable errors. ``retryable`` decides whether a consumer retries a handler."""

from __future__ import annotations

from typing import Any


class CadenzaError(Exception):
    """Base error: carries a stable ``code`` and whether retrying may help."""

    code: str = "error"
    retryable: bool = True
    details: dict[str, Any] | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if details is not None:
            self.details = details
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.details is not None:
            data["details"] = self.details
        return data


class RetryableError(CadenzaError):
    """A transient failure: try again later."""

    code = "retryable"
    retryable = True


class NonRetryableError(CadenzaError):
    """A permanent failure: retrying cannot help, fail (or dead-letter) at once."""

    code = "non_retryable"
    retryable = False


class Unavailable(RetryableError):
    """A backing service (broker, database, Redis, object store) is away: wait for it.

    Consumers never dead-letter a message for this (``ConsumerOptions.is_outage``)."""

    code = "unavailable"


class DecodeError(NonRetryableError):
    """A message that is not a valid Cadenza CloudEvent (bad headers, unknown type, bad payload)."""

    code = "undecodable"


def is_retryable(exc: BaseException) -> bool:
    """Errors are retryable unless they say otherwise (``retryable = False``)."""
    return bool(getattr(exc, "retryable", True))

"""Retries of idempotent calls (tenacity): connection failures and 429/502/503/504, waiting
what ``Retry-After`` asks (capped) or else exponential backoff with jitter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential_jitter

from .errors import ApiError

TRANSIENT_STATUS = frozenset({429, 502, 503, 504})


def transient(error: BaseException) -> bool:
    if isinstance(error, ApiError):
        return error.status in TRANSIENT_STATUS
    return isinstance(error, httpx.TransportError)


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` counts the first try; 1 = never retry."""

    max_attempts: int = 4
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    max_retry_after_s: float = 60.0

    def tenacity_kwargs(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.max_attempts),
            "wait": _RetryAfterOrBackoff(self),
            "retry": retry_if_exception(transient),
            "reraise": True,
        }


class _RetryAfterOrBackoff(wait_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.backoff = wait_exponential_jitter(
            multiplier=policy.initial_backoff_s,
            max=policy.max_backoff_s,
            jitter=policy.initial_backoff_s,
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(min(retry_after, self.policy.max_retry_after_s))
        return float(self.backoff(retry_state))

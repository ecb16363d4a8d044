"""Typed LLM errors. Each carries a stable ``code`` and, through its base class, whether a
retry may help, so the worker's retry policy and the bus treat them like any Cadenza error.

Messages never contain API keys: providers redact them before raising."""

from __future__ import annotations

from cadenza_events import CadenzaError, NonRetryableError, RetryableError


class LLMError(CadenzaError):
    """Base of every error raised by ``cadenza_llm``."""

    code = "llm_error"


class RateLimitedError(LLMError, RetryableError):
    """The provider answered 429. ``retry_after`` is its ``Retry-After`` in seconds, if sent."""

    code = "llm_rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderUnavailableError(LLMError, RetryableError):
    """5xx, a timeout or a connection failure: the provider may be back soon."""

    code = "llm_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BadRequestError(LLMError, NonRetryableError):
    """The request itself is wrong (a 4xx, a malformed ``provider:model``, a prompt too long)."""

    code = "llm_bad_request"


class AuthError(LLMError, NonRetryableError):
    """The provider refused the credentials (401/403)."""

    code = "llm_auth"


class UnknownProviderError(LLMError, NonRetryableError):
    """``provider:model`` names a provider that is not configured."""

    code = "llm_unknown_provider"


class UnknownModelError(LLMError, NonRetryableError):
    """The provider exists but does not know the model (e.g. an unknown local model name)."""

    code = "llm_unknown_model"


class InvalidOutputError(LLMError, NonRetryableError):
    """The model's output could not be turned into a response (e.g. cut off at ``max_tokens``
    in the middle of a constrained tool call)."""

    code = "llm_invalid_output"


class CassetteMissError(LLMError, NonRetryableError):
    """Replay found no recorded response for a request. Never answered with a made-up reply."""

    code = "cassette_miss"

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key

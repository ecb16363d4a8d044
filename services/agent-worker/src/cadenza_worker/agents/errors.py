"""Typed failures of an agent task (non-retryable: retrying would make the same mistake)."""

from __future__ import annotations

from cadenza_events import NonRetryableError


class AgentOutputError(NonRetryableError):
    """The final answer never matched the agent's output schema."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="agent_invalid_output")


class HandoffDepthError(NonRetryableError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="handoff_depth_exceeded")

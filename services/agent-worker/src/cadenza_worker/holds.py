"""Tool calls held for a person: approvals of risky calls, and effects left in doubt.

A worker never waits for a person. It raises :class:`HoldRequested` instead of making the
call; the executor turns it into a ``Hold`` output, the task's result says
``awaiting_approval`` / ``in_doubt``, the lease goes back and the orchestrator parks the task
and records the request. When someone answers, the orchestrator dispatches the task again;
this module then reads the answer (the ``approvals`` row of the same task and call index)
and the call goes ahead, is refused, or — in doubt — takes the operator's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cadenza_events import Hold
from cadenza_runtime import is_outage
from cadenza_state import ApprovalRecord, HoldKind, HoldStatus
from cadenza_workflow import ApprovalPolicy, approval_rule
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import metrics
from .errors import JournalUnavailable
from .tools import Tool, requires_approval


class HoldRequested(Exception):
    """The call must not be made now: the task waits for a person."""

    def __init__(self, hold: Hold) -> None:
        super().__init__(f"{hold.kind}: {hold.tool} call #{hold.call_index}")
        self.hold = hold


@dataclass(frozen=True)
class Decision:
    """A person's (or the timeout's) answer to a held call."""

    status: str
    comment: str | None
    output: Any
    decided_by: str | None
    decided_at: datetime | None = None

    @property
    def approved(self) -> bool:
        return self.status == HoldStatus.APPROVED

    def refusal(self) -> str:
        """What the model is told when the call was not approved."""
        if self.status == HoldStatus.EXPIRED:
            why = "nobody approved it in time"
        else:
            why = f"it was rejected by {self.decided_by or 'an operator'}"
        comment = f": {self.comment}" if self.comment else ""
        return f"the call was not made: {why}{comment}"


class HoldDecisions:
    """Reads answers from the ``approvals`` table (the newest answered one of the call)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def decision(self, task_id: str, call_index: int, kind: str) -> Decision | None:
        stmt = (
            select(ApprovalRecord)
            .where(
                ApprovalRecord.task_id == task_id,
                ApprovalRecord.call_index == call_index,
                ApprovalRecord.kind == kind,
                ApprovalRecord.status.not_in([HoldStatus.PENDING, HoldStatus.CANCELLED]),
            )
            .order_by(ApprovalRecord.attempt.desc())
            .limit(1)
        )
        try:
            async with self._sessions() as session:
                row = await session.scalar(stmt)
        except Exception as exc:
            if is_outage(exc):
                raise JournalUnavailable(f"approvals unreachable: {exc}") from exc
            raise
        if row is None:
            return None
        return Decision(row.status, row.comment, row.output, row.decided_by, row.decided_at)


def hold(kind: str, call_index: int, tool: str, arguments: dict[str, Any], **extra: Any) -> Hold:
    """A hold, counted (``cadenza_worker_holds_total{kind,tool}``)."""
    metrics.HOLDS.labels(kind, tool).inc()
    return Hold(kind=kind, call_index=call_index, tool=tool, arguments=arguments, **extra)


@dataclass(frozen=True)
class ApprovalGate:
    """Decides whether a tool call may be made now (docs/guardrails.md)."""

    allow_hosts: tuple[str, ...] = ()
    """Hosts http_request may write to without approval (CADENZA_WORKER_APPROVAL_ALLOW_HOSTS)."""
    timeout_s: float = 7 * 24 * 3600.0
    """How long a `tool` task's held call waits (agents set their own)."""

    async def check(
        self,
        tool: Tool,
        arguments: dict[str, Any],
        *,
        call_index: int,
        task_id: str,
        decisions: HoldDecisions,
        policy: ApprovalPolicy | None = None,
        reason: str = "",
    ) -> Decision | None:
        """None: no approval needed, make the call. A decision: someone answered (approved,
        or not — then the call must not be made). No answer yet: raises HoldRequested."""
        rule = approval_rule(
            policy,
            tool.name,
            arguments,
            allow_hosts=self.allow_hosts,
            tool_requires_approval=requires_approval(tool),
        )
        if rule is None:
            return None
        answer = await decisions.decision(task_id, call_index, HoldKind.APPROVAL)
        if answer is None:
            raise HoldRequested(
                hold(
                    HoldKind.APPROVAL,
                    call_index,
                    tool.name,
                    arguments,
                    reason=reason[:4000],
                    rule=rule[:1000],
                    timeout_s=policy.timeout_s if policy is not None else self.timeout_s,
                    on_timeout=policy.on_timeout if policy is not None else "reject",
                )
            )
        metrics.HELD_CALLS_RESUMED.labels(HoldKind.APPROVAL.value, answer.status).inc()
        return answer

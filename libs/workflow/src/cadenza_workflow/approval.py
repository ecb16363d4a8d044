"""Which tool calls need a person's approval before they are made (docs/guardrails.md).

An agent's ``approval`` policy lists rules; a call matching any rule is held (not made)
until someone approves or rejects it. Independently of the rules, ``http_request`` with a
writing method (POST, PUT, PATCH, DELETE) to a host outside ``allow_hosts`` needs approval
by default (``http_writes: true``). Rules are data, matched by the worker; ``when`` is an
expression of the workflow sandbox over ``tool`` (the name) and ``args`` (the arguments).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import ExpressionError
from .expressions import compile_expression

HTTP_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_APPROVAL_TIMEOUT_S = 7 * 24 * 3600.0


class ApprovalRule(BaseModel):
    """A call matches when every condition given matches (an empty rule matches every call)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str | None = Field(default=None, max_length=255, description="Tool name (glob).")
    methods: list[str] | None = Field(
        default=None, max_length=10, description="HTTP methods (http_request's `method`)."
    )
    hosts: list[str] | None = Field(
        default=None, max_length=100, description="Hosts of the call's `url` (globs)."
    )
    when: str | None = Field(
        default=None,
        max_length=2000,
        description="Sandboxed expression over `tool` and `args`, e.g. `args.amount > 100`.",
    )

    @field_validator("when")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_expression(value)
            except ExpressionError as exc:
                raise ValueError(exc.message) from None
        return value

    def describe(self) -> str:
        parts = [
            f"tool={self.tool}" if self.tool else "",
            f"methods={','.join(self.methods)}" if self.methods else "",
            f"hosts={','.join(self.hosts)}" if self.hosts else "",
            f"when={self.when}" if self.when else "",
        ]
        return "rule(" + " ".join(p for p in parts if p) + ")"

    def matches(self, tool: str, args: dict[str, Any]) -> bool:
        """Whether the call matches. An expression that fails to evaluate (a missing key)
        counts as a match: a broken rule must hold the call, never wave it through."""
        if self.tool is not None and not fnmatchcase(tool, self.tool):
            return False
        if self.methods is not None:
            method = str(args.get("method", "GET")).upper()
            if method not in {m.upper() for m in self.methods}:
                return False
        if self.hosts is not None:
            host = url_host(args.get("url"))
            if host is None or not any(fnmatchcase(host, h.lower()) for h in self.hosts):
                return False
        if self.when is not None:
            try:
                return bool(compile_expression(self.when).evaluate({"tool": tool, "args": args}))
            except ExpressionError:
                return True
        return True


class ApprovalPolicy(BaseModel):
    """An agent's approval policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[ApprovalRule] = Field(
        default_factory=list, max_length=100, description="Calls matching any rule are held."
    )
    http_writes: bool = Field(
        strict=True,
        default=True,
        description="http_request with POST/PUT/PATCH/DELETE to a host outside `allow_hosts` "
        "(and the workers' CADENZA_WORKER_APPROVAL_ALLOW_HOSTS) needs approval.",
    )
    allow_hosts: list[str] = Field(
        default_factory=list, max_length=100, description="Hosts (globs) writes may reach."
    )
    timeout_s: float = Field(
        strict=True,
        default=DEFAULT_APPROVAL_TIMEOUT_S,
        gt=0,
        le=90 * 24 * 3600,
        description="How long a held call waits for an answer.",
    )
    on_timeout: Literal["reject", "fail"] = Field(
        default="reject",
        description="No answer in time: `reject` tells the model no; `fail` fails the task.",
    )


DEFAULT_POLICY = ApprovalPolicy()


class TaskApproval(BaseModel):
    """Approval rules of one workflow task, added to its agent's (or, for a ``tool`` task, to
    the default rule). A task can add rules, never remove the agent's nor relax the default
    rule for HTTP writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[ApprovalRule] = Field(
        default_factory=list,
        max_length=100,
        description="Calls of this task matching any rule are held (as well as those the "
        "agent's own rules hold).",
    )
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=90 * 24 * 3600,
        description="How long a held call of this task waits for an answer (default: the "
        "agent's, or the workers' CADENZA_WORKER_APPROVAL_TIMEOUT_S for a tool task).",
    )
    on_timeout: Literal["reject", "fail"] | None = Field(
        default=None,
        description="No answer in time: `reject` tells the model no; `fail` fails the task "
        "(default: the agent's, or `reject`).",
    )


def merge_approval(
    agent: ApprovalPolicy | None,
    task: TaskApproval | None,
    *,
    timeout_s: float = DEFAULT_APPROVAL_TIMEOUT_S,
) -> ApprovalPolicy | None:
    """The policy a task's calls are checked against: the agent's (or the default) with the
    task's rules first (a call both hold is described by the task's rule), and the task's
    timeout and ``on_timeout`` when it gives them. ``timeout_s`` is the default timeout when
    there is no agent policy (a tool task)."""
    if task is None:
        return agent
    base = agent if agent is not None else ApprovalPolicy(timeout_s=timeout_s)
    return base.model_copy(
        update={
            "rules": [*task.rules, *base.rules],
            "timeout_s": task.timeout_s if task.timeout_s is not None else base.timeout_s,
            "on_timeout": task.on_timeout or base.on_timeout,
        }
    )


def url_host(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None


def approval_rule(
    policy: ApprovalPolicy | None,
    tool: str,
    args: dict[str, Any],
    *,
    allow_hosts: tuple[str, ...] = (),
    tool_requires_approval: bool = False,
) -> str | None:
    """Why this call needs approval (a description of the rule), or None when it does not."""
    policy = policy or DEFAULT_POLICY
    if tool_requires_approval:
        return f"tool {tool} requires approval"
    for rule in policy.rules:
        if rule.matches(tool, args):
            return rule.describe()
    if policy.http_writes and tool == "http_request":
        method = str(args.get("method", "GET")).upper()
        host = url_host(args.get("url"))
        allowed = [*policy.allow_hosts, *allow_hosts]
        if method in HTTP_WRITE_METHODS and (
            host is None or not any(fnmatchcase(host, h.lower()) for h in allowed)
        ):
            return f"http_request {method} to a host not allowlisted ({host})"
    return None

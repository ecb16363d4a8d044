"""What a credential may do: scopes, checked per route by the auth dependency."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Scope(StrEnum):
    """One permission. ``admin`` implies every other scope (of its own tenant only)."""

    RUNS_READ = "runs:read"
    RUNS_WRITE = "runs:write"
    WORKFLOWS_READ = "workflows:read"
    WORKFLOWS_WRITE = "workflows:write"
    AGENTS_READ = "agents:read"
    AGENTS_WRITE = "agents:write"
    DATASETS_READ = "datasets:read"
    DATASETS_WRITE = "datasets:write"
    DOCUMENTS_READ = "documents:read"
    DOCUMENTS_WRITE = "documents:write"
    USAGE_READ = "usage:read"
    APPROVALS_WRITE = "approvals:write"
    TRIGGERS_READ = "triggers:read"
    TRIGGERS_WRITE = "triggers:write"
    EVENTS_WRITE = "events:write"
    ADMIN = "admin"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)

SCOPE_DESCRIPTIONS: dict[str, str] = {
    Scope.RUNS_READ: "Read runs, their status, events, timeline and usage.",
    Scope.RUNS_WRITE: "Start and cancel runs.",
    Scope.WORKFLOWS_READ: "Read registered workflows.",
    Scope.WORKFLOWS_WRITE: "Register workflow versions.",
    Scope.AGENTS_READ: "Read registered agents.",
    Scope.AGENTS_WRITE: "Register agent versions.",
    Scope.DATASETS_READ: "Read datasets.",
    Scope.DATASETS_WRITE: "Replace and delete datasets.",
    Scope.DOCUMENTS_READ: "Read collections and documents; search.",
    Scope.DOCUMENTS_WRITE: "Create collections; upload, replace and delete documents.",
    Scope.USAGE_READ: "Read the tenant's usage.",
    Scope.APPROVALS_WRITE: "Answer approval requests of runs.",
    Scope.TRIGGERS_READ: "Read triggers and schedules.",
    Scope.TRIGGERS_WRITE: "Register, enable, disable and delete triggers; manage schedules.",
    Scope.EVENTS_WRITE: "Send events (POST /v1/events) to the tenant's triggers.",
    Scope.ADMIN: "Everything above, plus API keys and the audit log of the tenant.",
}


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Known scopes among ``values`` (unknown names, e.g. an IdP's ``openid``, are ignored)."""
    known = {s.value for s in Scope}
    return frozenset(Scope(v) for v in values if v in known)


def grants(held: frozenset[Scope], needed: Iterable[str]) -> list[str]:
    """The scopes of ``needed`` that ``held`` lacks (empty = allowed)."""
    if Scope.ADMIN in held:
        return []
    return [s for s in needed if s not in held]

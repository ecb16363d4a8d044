"""Who is calling: the tenant and scopes a credential carries."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from .scopes import Scope

CredentialKind = Literal["api_key", "jwt", "anonymous"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``tenant`` comes from the credential, never from a header."""

    tenant: str
    scopes: frozenset[Scope]
    kind: CredentialKind
    # The audit actor: ``key:<id>``, ``jwt:<sub>`` or ``anonymous`` (dev mode).
    subject: str
    key_id: str | None = None


# Set by the auth dependency for the rest of the request (the audit trail reads it).
current_principal: ContextVar[Principal | None] = ContextVar("cadenza_principal", default=None)


def current_actor(default: str = "anonymous") -> str:
    principal = current_principal.get()
    return principal.subject if principal is not None else default

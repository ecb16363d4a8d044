"""Authentication and authorisation: API keys, JWT bearer tokens, scopes, rate limits."""

from .deps import (
    AdminPrincipal,
    CanAnswerApprovals,
    CanReadAgents,
    CanReadDatasets,
    CanReadDocuments,
    CanReadRuns,
    CanReadTriggers,
    CanReadUsage,
    CanReadWorkflows,
    CanSendEvents,
    CanWriteAgents,
    CanWriteDatasets,
    CanWriteDocuments,
    CanWriteRuns,
    CanWriteTriggers,
    CanWriteWorkflows,
    authenticate,
    authorize,
    bearer_token,
)
from .keys import IssuedKey, create_key
from .principal import Principal, current_actor, current_principal
from .problems import InsufficientScope, RateLimited, Unauthenticated
from .scopes import ALL_SCOPES, Scope
from .settings import AuthSettings

__all__ = [
    "ALL_SCOPES",
    "AdminPrincipal",
    "AuthSettings",
    "CanAnswerApprovals",
    "CanReadAgents",
    "CanReadDatasets",
    "CanReadDocuments",
    "CanReadRuns",
    "CanReadTriggers",
    "CanReadUsage",
    "CanReadWorkflows",
    "CanSendEvents",
    "CanWriteAgents",
    "CanWriteDatasets",
    "CanWriteDocuments",
    "CanWriteRuns",
    "CanWriteTriggers",
    "CanWriteWorkflows",
    "InsufficientScope",
    "IssuedKey",
    "Principal",
    "RateLimited",
    "Scope",
    "Unauthenticated",
    "authenticate",
    "authorize",
    "bearer_token",
    "create_key",
    "current_actor",
    "current_principal",
]

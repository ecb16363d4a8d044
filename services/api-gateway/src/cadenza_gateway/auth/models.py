"""Bodies of the /v1/api-keys routes."""

from __future__ import annotations

from datetime import datetime

from cadenza_state import ApiKeyRecord
from cadenza_workflow.json_types import json_integers
from pydantic import BaseModel, ConfigDict, Field

from .keys import public_prefix
from .scopes import Scope

TEN_YEARS_S = 10 * 366 * 86_400


class ApiKeyCreate(BaseModel):
    """A new key of the caller's tenant."""

    model_config = ConfigDict(extra="forbid")

    _integers = json_integers("expires_in_s")

    name: str = Field(
        min_length=1,
        max_length=255,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="What the key is for (e.g. `ci`, `billing-service`).",
    )
    scopes: list[Scope] = Field(
        min_length=1, description="What the key may do; at most the scopes of its creator."
    )
    expires_in_s: int | None = Field(
        default=None,
        gt=0,
        le=TEN_YEARS_S,
        description="Lifetime in seconds; omitted = until revoked.",
    )


class ApiKeyPublic(BaseModel):
    """A key as listed: never its secret, only its public prefix."""

    id: str = Field(description="Key id (the public part of the key).")
    prefix: str = Field(description="How the key starts (`cdz_<id>`): enough to recognise it.")
    name: str
    scopes: list[str]
    created_at: datetime
    created_by: str = Field(description="Who created it (`key:<id>`, `jwt:<sub>`, `cli`…).")
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    rotated_from: str | None = Field(default=None, description="Id of the key it replaced.")
    active: bool = Field(description="Neither revoked nor expired.")

    @classmethod
    def from_record(cls, record: ApiKeyRecord, *, active: bool) -> ApiKeyPublic:
        return cls(
            id=record.id,
            prefix=public_prefix(record.id),
            name=record.name,
            scopes=list(record.scopes),
            created_at=record.created_at,
            created_by=record.created_by,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            rotated_from=record.rotated_from,
            active=active,
        )


class ApiKeyCreated(ApiKeyPublic):
    """A key just created or rotated: ``key`` is shown this once and never again."""

    key: str = Field(description="The whole key: `Authorization: Bearer <key>`. Store it now.")


class ApiKeysPublic(BaseModel):
    items: list[ApiKeyPublic]

"""Request dependencies as ``Annotated`` aliases: routes declare what they need by type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, cast

from cadenza_runtime import Resources
from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ..documents import is_json_media_type, media_type
from ..problems import UnsupportedMediaType
from ..settings import GatewaySettings


# ``async def`` although they do not await: FastAPI runs a plain ``def`` dependency in its
# thread pool, a thread hop (and GIL hand-over) on every request for an attribute read.
async def get_resources(request: Request) -> Resources:
    return cast(Resources, request.app.state.resources)


async def get_settings(request: Request) -> GatewaySettings:
    return cast(GatewaySettings, request.app.state.settings)


ResourcesDep = Annotated[Resources, Depends(get_resources)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """A session for the request; the route opens (and so owns) its transactions."""
    async with resources.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e][\x20-\x7e]*$",
        description="Makes the request safe to retry: the same key (per tenant) returns the "
        "run the first request created (200) instead of creating another.",
    ),
]


async def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON (or not declared: JSON is assumed)."""
    declared = request.headers.get("content-type")
    if declared and not is_json_media_type(declared):
        raise UnsupportedMediaType(
            f"this endpoint reads JSON, not {media_type(declared)!r}; send application/json",
            accepted=["application/json"],
        )


def public_base_url(request: Request, settings: GatewaySettings) -> str:
    """The gateway's base URL as clients see it (settings, else this request's)."""
    return settings.public_url or str(request.base_url).rstrip("/")

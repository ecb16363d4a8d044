"""The routes triggers and schedules share, by name: a pair of ``POST /{name}/{action}`` that
turn one flag on and off (enable/disable, pause/resume) and ``DELETE /{name}``. Both need
``triggers:write``; each resource keeps its own paths, operation ids and texts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from .. import crud
from ..auth import CanWriteTriggers
from ..problems import problem_responses
from .deps import SessionDep

Switch = Callable[[AsyncSession, str, str, bool], Awaitable[BaseModel]]


def _name_path(noun: str) -> Any:
    # A default rather than an Annotated type: the description names the resource, and a
    # type built at run time cannot be written as an annotation here.
    return Path(max_length=128, description=f"{noun.capitalize()} name.")


def add_switch_routes(
    router: APIRouter,
    *,
    noun: str,
    switch: Switch,
    response_model: type[BaseModel],
    on: tuple[str, str],
    off: tuple[str, str],
) -> None:
    """``on``/``off`` = (action, summary): ``POST /{name}/{action}`` calls
    ``switch(session, tenant, name, True/False)``; operation id ``{action}_{noun}``."""
    for (action, summary), value in ((on, True), (off, False)):
        _add_switch_route(router, noun, switch, response_model, action, summary, value)


def _add_switch_route(
    router: APIRouter,
    noun: str,
    switch: Switch,
    response_model: type[BaseModel],
    action: str,
    summary: str,
    value: bool,
) -> None:
    async def flip(
        session: SessionDep, tenant: CanWriteTriggers, name: str = _name_path(noun)
    ) -> Any:
        return await switch(session, tenant, name, value)

    router.post(
        f"/{{name}}/{action}",
        name=f"{action}_{noun}",
        response_model=response_model,
        summary=summary,
        responses=problem_responses(404),
    )(flip)


def add_delete_route(
    router: APIRouter,
    *,
    noun: str,
    record: Any,
    not_found: Callable[[str], Exception],
    summary: str,
    description: str | None = None,
    also: Callable[[AsyncSession, str, str], Awaitable[None]] | None = None,
) -> None:
    """``DELETE /{name}``: every row of ``record`` by that name (404 when none), then
    ``also(session, tenant, name)`` in the same transaction, audited as ``{noun}.deleted``."""

    async def remove(
        session: SessionDep, tenant: CanWriteTriggers, name: str = _name_path(noun)
    ) -> Response:
        async with session.begin():
            result = await session.execute(
                delete(record).where(record.tenant_id == tenant, record.name == name)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                raise not_found(f"no {noun} named {name!r}")
            if also is not None:
                await also(session, tenant, name)
            crud.record_audit(
                session=session,
                tenant_id=tenant,
                action=f"{noun}.deleted",
                subject=f"{noun}:{name}",
            )
        return Response(status_code=204)

    remove.__doc__ = description  # a docstring: FastAPI makes it the operation's description
    router.delete(
        "/{name}",
        status_code=204,
        name=f"delete_{noun}",
        summary=summary,
        responses=problem_responses(404),
    )(remove)

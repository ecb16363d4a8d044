"""`cadenza keys`: API keys of the caller's tenant through the gateway, and `bootstrap`, which
writes a tenant's first admin key straight into the database (operators only)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from cadenza_client import ApiKeyCreated

from .client import DEFAULT_URL, on_gateway, print_json

keys_app = typer.Typer(
    help="Create, list, rotate and revoke API keys (needs a key with the `admin` scope in "
    "$CADENZA_API_KEY, or a dev-mode gateway).",
    no_args_is_help=True,
)
UrlOption = Annotated[str, typer.Option("--url", envvar="CADENZA_URL", help="Gateway base URL.")]
ScopesOption = Annotated[
    list[str],
    typer.Option("--scope", "-s", help="A scope (repeat): runs:read, runs:write, admin, …"),
]


def _show_created(prefix: str, scopes: list[str], key: str) -> None:
    typer.echo(f"key {prefix} ({', '.join(scopes)}): shown once, store it now", err=True)
    typer.echo(key)


def _show_issued(created: ApiKeyCreated) -> None:
    _show_created(created.prefix, created.scopes, created.key)


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. `ci`.")],
    scopes: ScopesOption,
    expires_in: Annotated[
        int | None, typer.Option("--expires-in", help="Lifetime in seconds.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Create a key of your tenant; prints the key (only this once) on stdout."""
    _show_issued(on_gateway(url, lambda c: c.create_api_key(name, scopes, expires_in_s=expires_in)))


@keys_app.command("list")
def list_keys(
    url: UrlOption = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON.")] = False,
) -> None:
    """List your tenant's keys (prefixes only: secrets are never shown again)."""
    items = on_gateway(url, lambda c: c.list_api_keys())
    if as_json:
        print_json(items)
        return
    for key in items:
        state = "active" if key.active else ("revoked" if key.revoked_at else "expired")
        typer.echo(f"{key.prefix}  {state:<8} {key.name:<20} {' '.join(key.scopes)}")


@keys_app.command("rotate")
def rotate_key(
    key_id: Annotated[str, typer.Argument(help="Key id or prefix (cdz_<id>).")],
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Replace a key by a new one with the same scopes; the old one stops working now."""
    _show_issued(on_gateway(url, lambda c: c.rotate_api_key(_id(key_id))))


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="Key id or prefix (cdz_<id>).")],
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Revoke a key at once."""
    on_gateway(url, lambda c: c.revoke_api_key(_id(key_id)))
    typer.echo(f"revoked cdz_{_id(key_id)}")


@keys_app.command("bootstrap")
def bootstrap_key(
    tenant: Annotated[str, typer.Option(help="The tenant the key belongs to.")],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "admin",
    scopes: ScopesOption = ["admin"],  # noqa: B006 - typer reads the default
) -> None:
    """Write a key straight into the database ($CADENZA_DATABASE_URL, migrated first) with
    the gateway's pepper ($CADENZA_GATEWAY_AUTH_API_KEY_PEPPER): a new tenant's first
    admin key. Prints the key on stdout."""
    import re

    from cadenza_gateway.auth import AuthSettings, Scope, create_key
    from cadenza_gateway.settings import TENANT_ID_PATTERN
    from cadenza_state import StateSettings, create_engine, migrate, session_factory

    if not re.match(TENANT_ID_PATTERN, tenant):
        raise typer.BadParameter(f"tenant ids match {TENANT_ID_PATTERN}", param_hint="--tenant")
    unknown = sorted(set(scopes) - {s.value for s in Scope})
    if unknown:
        raise typer.BadParameter(f"unknown scopes {unknown}", param_hint="--scope")
    pepper = AuthSettings().api_key_pepper.get_secret_value()

    async def go() -> tuple[str, str]:
        engine = create_engine(StateSettings())
        try:
            await migrate(engine)
            sessions = session_factory(engine)
            async with sessions() as session, session.begin():
                issued = await create_key(
                    session=session,
                    tenant_id=tenant,
                    name=name,
                    scopes=scopes,
                    created_by="cli:bootstrap",
                    pepper=pepper,
                )
            return f"cdz_{issued.record.id}", issued.token
        finally:
            await engine.dispose()

    prefix, token = asyncio.run(go())
    _show_created(prefix, scopes, token)


def _id(key_id: str) -> str:
    return key_id.removeprefix("cdz_").split("_")[0]

"""`cadenza keys`: API keys of the caller's tenant through the gateway, and `bootstrap`, which
writes a tenant's first admin key straight into the database (operators only)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import httpx
import typer
from cadenza_client import raise_for_problem

from .client import DEFAULT_URL, ApiError, api_client, print_json

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


def call_gateway(
    method: str,
    path: str,
    url: str,
    body: dict[str, Any] | None = None,
    *,
    content_type: str = "application/json",
) -> Any:
    async def go() -> Any:
        async with api_client(url) as client:
            content = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": content_type} if body is not None else {}
            resp = await client.request(method, path, content=content, headers=headers)
        raise_for_problem(resp)  # a typed cadenza_client.ApiError
        return resp.json() if resp.content else None

    try:
        return asyncio.run(go())
    except (ApiError, httpx.HTTPError) as exc:
        typer.echo(str(exc) or repr(exc), err=True)
        raise typer.Exit(2) from None


def _show_created(created: dict[str, Any]) -> None:
    typer.echo(
        f"key {created['prefix']} ({', '.join(created['scopes'])}): shown once, store it now",
        err=True,
    )
    typer.echo(created["key"])


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
    body: dict[str, Any] = {"name": name, "scopes": scopes}
    if expires_in is not None:
        body["expires_in_s"] = expires_in
    _show_created(call_gateway("POST", "/v1/api-keys", url, body))


@keys_app.command("list")
def list_keys(
    url: UrlOption = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON.")] = False,
) -> None:
    """List your tenant's keys (prefixes only: secrets are never shown again)."""
    items = call_gateway("GET", "/v1/api-keys", url)["items"]
    if as_json:
        print_json(items)
        return
    for key in items:
        state = "active" if key["active"] else ("revoked" if key["revoked_at"] else "expired")
        typer.echo(f"{key['prefix']}  {state:<8} {key['name']:<20} {' '.join(key['scopes'])}")


@keys_app.command("rotate")
def rotate_key(
    key_id: Annotated[str, typer.Argument(help="Key id or prefix (cdz_<id>).")],
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Replace a key by a new one with the same scopes; the old one stops working now."""
    _show_created(call_gateway("POST", f"/v1/api-keys/{_id(key_id)}/rotate", url))


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="Key id or prefix (cdz_<id>).")],
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Revoke a key at once."""
    call_gateway("DELETE", f"/v1/api-keys/{_id(key_id)}", url)
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

    async def go() -> dict[str, Any]:
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
            return {"prefix": f"cdz_{issued.record.id}", "scopes": scopes, "key": issued.token}
        finally:
            await engine.dispose()

    _show_created(asyncio.run(go()))


def _id(key_id: str) -> str:
    return key_id.removeprefix("cdz_").split("_")[0]

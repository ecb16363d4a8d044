"""`cadenza approvals` and `cadenza dead-letters`: the inboxes operators answer
(docs/guardrails.md), through the gateway with the key in $CADENZA_API_KEY."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from .client import DEFAULT_URL, print_json
from .keys import UrlOption, call_gateway

approvals_app = typer.Typer(
    help="Held tool calls: approve or reject risky calls, resolve effects in doubt (needs "
    "the `approvals:write` scope).",
    no_args_is_help=True,
)
dead_letters_app = typer.Typer(
    help="Messages a consumer gave up on: list, replay after a fix, or discard (needs `admin`).",
    no_args_is_help=True,
)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the JSON.")]
CommentOption = Annotated[
    str | None, typer.Option("--comment", "-m", help="Why (kept in the audit log).")
]


def _query(**params: Any) -> str:
    pairs = [f"{k}={v}" for k, v in params.items() if v is not None]
    return "?" + "&".join(pairs) if pairs else ""


@approvals_app.command("list")
def list_approvals(
    status: Annotated[str | None, typer.Option(help="pending, approved, rejected…")] = "pending",
    run: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    kind: Annotated[str | None, typer.Option(help="approval or in_doubt.")] = None,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonFlag = False,
) -> None:
    """The inbox (pending ones by default; `--status ''` for all)."""
    query = _query(status=status or None, run_id=run, kind=kind, limit=100)
    items = call_gateway("GET", f"/v1/approvals{query}", url)["items"]
    if as_json:
        print_json(items)
        return
    for item in items:
        arguments = json.dumps(item["arguments"], ensure_ascii=False)[:120]
        typer.echo(
            f"{item['id']}  {item['kind']:<8} {item['status']:<9} run {item['run_id']}  "
            f"{item['tool']} {arguments}  {item['reason'] or ''}"[:300]
        )


@approvals_app.command("show")
def show_approval(approval_id: str, url: UrlOption = DEFAULT_URL) -> None:
    """One held call, with its exact arguments."""
    print_json(call_gateway("GET", f"/v1/approvals/{approval_id}", url))


@approvals_app.command("approve")
def approve(approval_id: str, comment: CommentOption = None, url: UrlOption = DEFAULT_URL) -> None:
    """Approve: the task resumes at the call and makes it, once."""
    body = call_gateway("POST", f"/v1/approvals/{approval_id}/approve", url, {"comment": comment})
    typer.echo(f"{body['id']} {body['status']}")


@approvals_app.command("reject")
def reject(approval_id: str, comment: CommentOption = None, url: UrlOption = DEFAULT_URL) -> None:
    """Reject: the agent is told (the call's observation); a tool task fails."""
    body = call_gateway("POST", f"/v1/approvals/{approval_id}/reject", url, {"comment": comment})
    typer.echo(f"{body['id']} {body['status']}")


@approvals_app.command("resolve")
def resolve(
    approval_id: str,
    outcome: Annotated[str, typer.Argument(help="done (it happened) or retry (it did not).")],
    output: Annotated[
        str | None, typer.Option(help="With done: the call's result, as JSON.")
    ] = None,
    comment: CommentOption = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Resolve an effect in doubt."""
    try:
        value = json.loads(output) if output is not None else None
    except ValueError as exc:
        typer.echo(f"--output is not JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    body = call_gateway(
        "POST",
        f"/v1/approvals/{approval_id}/resolve",
        url,
        {"outcome": outcome, "output": value, "comment": comment},
    )
    typer.echo(f"{body['id']} {body['status']}")


@dead_letters_app.command("list")
def list_dead_letters(
    status: Annotated[str | None, typer.Option(help="pending, replayed, discarded.")] = "pending",
    topic: Annotated[str | None, typer.Option(help="Only this original topic.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters, newest first."""
    query = _query(status=status or None, topic=topic, run_id=run, limit=100)
    items = call_gateway("GET", f"/v1/dead-letters{query}", url)["items"]
    if as_json:
        print_json(items)
        return
    for item in items:
        typer.echo(
            f"{item['id']}  {item['status']:<9} {item['topic']} key={item['key']} "
            f"run={item['run_id']}  {item['reason'][:120]}"
        )


@dead_letters_app.command("replay")
def replay(letter_id: int, url: UrlOption = DEFAULT_URL) -> None:
    """Publish the original record again to its topic."""
    body = call_gateway("POST", f"/v1/dead-letters/{letter_id}/replay", url)
    typer.echo(f"{body['id']} {body['status']}")


@dead_letters_app.command("discard")
def discard(letter_id: int, url: UrlOption = DEFAULT_URL) -> None:
    """Drop it for good (it stays listed as discarded)."""
    body = call_gateway("POST", f"/v1/dead-letters/{letter_id}/discard", url)
    typer.echo(f"{body['id']} {body['status']}")

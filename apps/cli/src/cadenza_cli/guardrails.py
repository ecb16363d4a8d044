"""`cadenza approvals` and `cadenza dead-letters`: the inboxes operators answer
(docs/guardrails.md), through the gateway with the key in $CADENZA_API_KEY."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from cadenza_client import Approval, DeadLetter

from .client import DEFAULT_URL, on_gateway, print_json
from .keys import UrlOption

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


def _show_state(item: Approval | DeadLetter) -> None:
    typer.echo(f"{item.id} {item.status}")


@approvals_app.command("list")
def list_approvals(
    status: Annotated[str | None, typer.Option(help="pending, approved, rejected…")] = "pending",
    run: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    kind: Annotated[str | None, typer.Option(help="approval or in_doubt.")] = None,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonFlag = False,
) -> None:
    """The inbox (pending ones by default; `--status ''` for all)."""
    page = on_gateway(
        url, lambda c: c.list_approvals(status=status or None, run_id=run, kind=kind, limit=100)
    )
    if as_json:
        print_json(page.items)
        return
    for item in page.items:
        arguments = json.dumps(item.arguments, ensure_ascii=False)[:120]
        typer.echo(
            f"{item.id}  {item.kind:<8} {item.status:<9} run {item.run_id}  "
            f"{item.tool} {arguments}  {item.reason or ''}"[:300]
        )


@approvals_app.command("show")
def show_approval(approval_id: str, url: UrlOption = DEFAULT_URL) -> None:
    """One held call, with its exact arguments."""
    print_json(on_gateway(url, lambda c: c.get_approval(approval_id)))


def _answer(approval_id: str, approve: bool, comment: str | None, url: str) -> None:
    _show_state(
        on_gateway(url, lambda c: c.answer_approval(approval_id, approve=approve, comment=comment))
    )


@approvals_app.command("approve")
def approve(approval_id: str, comment: CommentOption = None, url: UrlOption = DEFAULT_URL) -> None:
    """Approve: the task resumes at the call and makes it, once."""
    _answer(approval_id, True, comment, url)


@approvals_app.command("reject")
def reject(approval_id: str, comment: CommentOption = None, url: UrlOption = DEFAULT_URL) -> None:
    """Reject: the agent is told (the call's observation); a tool task fails."""
    _answer(approval_id, False, comment, url)


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
    _show_state(
        on_gateway(
            url,
            lambda c: c.resolve_approval(approval_id, outcome, output=value, comment=comment),
        )
    )


@dead_letters_app.command("list")
def list_dead_letters(
    status: Annotated[str | None, typer.Option(help="pending, replayed, discarded.")] = "pending",
    topic: Annotated[str | None, typer.Option(help="Only this original topic.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters, newest first."""
    page = on_gateway(
        url,
        lambda c: c.list_dead_letters(status=status or None, topic=topic, run_id=run, limit=100),
    )
    if as_json:
        print_json(page.items)
        return
    for item in page.items:
        typer.echo(
            f"{item.id}  {item.status:<9} {item.topic} key={item.key} "
            f"run={item.run_id}  {item.reason[:120]}"
        )


@dead_letters_app.command("replay")
def replay(letter_id: int, url: UrlOption = DEFAULT_URL) -> None:
    """Publish the original record again to its topic."""
    _show_state(on_gateway(url, lambda c: c.settle_dead_letter(letter_id, replay=True)))


@dead_letters_app.command("discard")
def discard(letter_id: int, url: UrlOption = DEFAULT_URL) -> None:
    """Drop it for good (it stays listed as discarded)."""
    _show_state(on_gateway(url, lambda c: c.settle_dead_letter(letter_id, replay=False)))

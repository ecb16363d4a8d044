"""`cadenza triggers`, `cadenza schedules` and `cadenza events send`: what starts runs
besides `cadenza run` (docs/triggers.md)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from cadenza_client import AsyncCadenza
from cadenza_workflow import SpecValidationError
from cadenza_workflow.loading import load_document

from .client import DEFAULT_URL, on_gateway, print_json
from .keys import UrlOption

triggers_app = typer.Typer(
    help="Triggers: which upstream events (Kafka topics, POST /v1/events) start which "
    "workflow. Needs triggers:read / triggers:write.",
    no_args_is_help=True,
)
schedules_app = typer.Typer(
    help="Cron schedules of workflows. Needs triggers:read / triggers:write.",
    no_args_is_help=True,
)
events_app = typer.Typer(help="Send CloudEvents to triggers.", no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="The trigger's or schedule's name.")]
FileArg = Annotated[Path, typer.Argument(help="A YAML or JSON document.", exists=True)]


def read_document(path: Path) -> dict[str, Any]:
    # The gateway's YAML 1.2 loader: `NO`, `on` and dates stay text (PyYAML's safe_load is
    # YAML 1.1: `false`, `true` and a date object the JSON request could not encode).
    try:
        data = load_document(
            path.read_text(), "application/json" if path.suffix == ".json" else None
        )
    except SpecValidationError as exc:
        typer.echo(f"{path}: {exc.errors[0].message if exc.errors else exc}", err=True)
        raise typer.Exit(2) from None
    if not isinstance(data, dict):
        typer.echo(f"{path}: expected a mapping", err=True)
        raise typer.Exit(2)
    return data


@dataclass(frozen=True)
class NamedCommands:
    """Triggers and schedules have one shape on the command line: created from a document,
    listed, shown, switched on and off, deleted, each by name."""

    noun: str  # "trigger", "schedule"
    create: tuple[str, str, Callable[[AsyncCadenza, dict[str, Any]], Awaitable[Any]]]
    list: Callable[[AsyncCadenza], Awaitable[Any]]
    get: Callable[[AsyncCadenza, str], Awaitable[Any]]
    switch: Callable[[AsyncCadenza, str, bool], Awaitable[Any]]
    on: str  # the command that passes True to `switch`
    off: str
    delete: Callable[[AsyncCadenza, str], Awaitable[None]]
    show_help: str | None = None

    def register(self, app: typer.Typer) -> None:
        verb, create_help, create = self.create

        @app.command(verb, help=create_help)
        def create_command(path: FileArg, url: UrlOption = DEFAULT_URL) -> None:
            spec = read_document(path)
            print_json(on_gateway(url, lambda c: create(c, spec)))

        @app.command("list")
        def list_command(url: UrlOption = DEFAULT_URL) -> None:
            print_json(on_gateway(url, self.list))

        @app.command("show", help=self.show_help)
        def show_command(name: NameArg, url: UrlOption = DEFAULT_URL) -> None:
            print_json(on_gateway(url, lambda c: self.get(c, name)))

        for command, value in ((self.on, True), (self.off, False)):
            self._switch_command(app, command, value)

        @app.command("delete")
        def delete_command(name: NameArg, url: UrlOption = DEFAULT_URL) -> None:
            on_gateway(url, lambda c: self.delete(c, name))
            typer.echo(f"{self.noun} {name} deleted", err=True)

    def _switch_command(self, app: typer.Typer, command: str, value: bool) -> None:
        @app.command(command)
        def switch_command(name: NameArg, url: UrlOption = DEFAULT_URL) -> None:
            print_json(on_gateway(url, lambda c: self.switch(c, name, value)))


NamedCommands(
    noun="trigger",
    create=(
        "register",
        "Register a trigger (a new version when the name exists).",
        AsyncCadenza.register_trigger,
    ),
    list=AsyncCadenza.list_triggers,
    get=AsyncCadenza.get_trigger,
    switch=AsyncCadenza.set_trigger_enabled,
    on="enable",
    off="disable",
    delete=AsyncCadenza.delete_trigger,
).register(triggers_app)
NamedCommands(
    noun="schedule",
    create=(
        "create",
        "Create a schedule from a document (name, cron, timezone, workflow, inputs, …).",
        AsyncCadenza.create_schedule,
    ),
    list=AsyncCadenza.list_schedules,
    get=AsyncCadenza.get_schedule,
    switch=AsyncCadenza.set_schedule_paused,
    on="pause",
    off="resume",
    delete=AsyncCadenza.delete_schedule,
    show_help="The schedule with its next fire times.",
).register(schedules_app)


def cloud_event(
    event_type: str, source: str, data: Any, event_id: str | None, subject: str | None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or uuid.uuid4().hex,
        "source": source,
        "type": event_type,
        "datacontenttype": "application/json",
        "data": data,
    }
    if subject:
        event["subject"] = subject
    return event


async def produce(topic: str, event: dict[str, Any], bootstrap: str) -> None:
    """One CloudEvent in Kafka binary mode (ce_* headers, the data as the value), through
    the bus's Kafka producer (no Cadenza topic is created)."""
    from cadenza_events import BusSettings, TopicRegistry
    from cadenza_events.kafka import KafkaPublisher

    headers = [
        (f"ce_{k}", str(v).encode())
        for k, v in event.items()
        if k not in ("data", "datacontenttype")
    ]
    headers.append(("content-type", b"application/json"))
    settings = BusSettings(bootstrap_servers=bootstrap)
    publisher = KafkaPublisher(settings, TopicRegistry(settings.topic_prefix))
    await publisher.start()
    try:
        key = str(event.get("subject") or event["id"]).encode()
        await publisher.publish_raw(topic, key, json.dumps(event["data"]).encode(), headers)
    finally:
        await publisher.stop()


@events_app.command("send")
def send_event(
    event_type: Annotated[str, typer.Option("--type", "-t", help="CloudEvents `type`.")],
    data: Annotated[str, typer.Option("--data", "-d", help="The event's data, as JSON.")] = "{}",
    source: Annotated[str, typer.Option("--source", help="CloudEvents `source`.")] = "/cli",
    event_id: Annotated[
        str | None,
        typer.Option(
            "--id", help="CloudEvents `id` (default: random; resending an id is a duplicate)."
        ),
    ] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="CloudEvents `subject`.")] = None,
    topic: Annotated[
        str | None,
        typer.Option(
            "--topic",
            help="Produce to this Kafka topic (binary mode) instead of POST /v1/events.",
        ),
    ] = None,
    bootstrap: Annotated[
        str,
        typer.Option("--bootstrap", envvar="CADENZA_BUS_BOOTSTRAP_SERVERS", help="Kafka servers."),
    ] = os.environ.get("CADENZA_BUS_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Send one CloudEvent: to the gateway (prints the runs it started, or that it was a
    duplicate) or, with --topic, onto a Kafka topic a trigger consumes."""
    try:
        payload = json.loads(data)
    except ValueError as exc:
        typer.echo(f"--data is not JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    event = cloud_event(event_type, source, payload, event_id, subject)
    if topic is not None:
        asyncio.run(produce(topic, event, bootstrap))
        typer.echo(f"event {event['id']} produced to {topic}", err=True)
        return
    print_json(on_gateway(url, lambda c: c.send_event(event)))

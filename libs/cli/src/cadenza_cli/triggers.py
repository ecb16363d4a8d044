"""`cadenza triggers`, `cadenza schedules` and `cadenza events send`: what starts runs
besides `cadenza run` (docs/triggers.md)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from .client import DEFAULT_URL, print_json
from .keys import UrlOption, call_gateway

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
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        typer.echo(f"{path}: expected a mapping", err=True)
        raise typer.Exit(2)
    return data


@triggers_app.command("register")
def register_trigger(path: FileArg, url: UrlOption = DEFAULT_URL) -> None:
    """Register a trigger (a new version when the name exists)."""
    print_json(call_gateway("POST", "/v1/triggers", url, read_document(path)))


@triggers_app.command("list")
def list_triggers(url: UrlOption = DEFAULT_URL) -> None:
    print_json(call_gateway("GET", "/v1/triggers", url))


@triggers_app.command("show")
def show_trigger(name: NameArg, url: UrlOption = DEFAULT_URL) -> None:
    print_json(call_gateway("GET", f"/v1/triggers/{name}", url))


@triggers_app.command("enable")
def enable_trigger(name: NameArg, url: UrlOption = DEFAULT_URL) -> None:
    print_json(call_gateway("POST", f"/v1/triggers/{name}/enable", url))


@triggers_app.command("disable")
def disable_trigger(name: NameArg, url: UrlOption = DEFAULT_URL) -> None:
    print_json(call_gateway("POST", f"/v1/triggers/{name}/disable", url))


@triggers_app.command("delete")
def delete_trigger(name: NameArg, url: UrlOption = DEFAULT_URL) -> None:
    call_gateway("DELETE", f"/v1/triggers/{name}", url)
    typer.echo(f"trigger {name} deleted", err=True)


@schedules_app.command("create")
def create_schedule(path: FileArg, url: UrlOption = DEFAULT_URL) -> None:
    """Create a schedule from a document (name, cron, timezone, workflow, inputs, …)."""
    print_json(call_gateway("POST", "/v1/schedules", url, read_document(path)))


@schedules_app.command("list")
def list_schedules(url: UrlOption = DEFAULT_URL) -> None:
    print_json(call_gateway("GET", "/v1/schedules", url))


@schedules_app.command("show")
def show_schedule(name: NameArg, url: UrlOption = DEFAULT_URL) -> None:
    """The schedule with its next fire times."""
    print_json(call_gateway("GET", f"/v1/schedules/{name}", url))


@schedules_app.command("pause")
def pause_schedule(name: NameArg, url: UrlOption = DEFAULT_URL) -> None:
    print_json(call_gateway("POST", f"/v1/schedules/{name}/pause", url))


@schedules_app.command("resume")
def resume_schedule(name: NameArg, url: UrlOption = DEFAULT_URL) -> None:
    print_json(call_gateway("POST", f"/v1/schedules/{name}/resume", url))


@schedules_app.command("delete")
def delete_schedule(name: NameArg, url: UrlOption = DEFAULT_URL) -> None:
    call_gateway("DELETE", f"/v1/schedules/{name}", url)
    typer.echo(f"schedule {name} deleted", err=True)


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
    print_json(
        call_gateway("POST", "/v1/events", url, event, content_type="application/cloudevents+json")
    )

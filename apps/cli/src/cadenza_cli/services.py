"""`cadenza gateway|orchestrator|worker|rag-ingest|trigger`: each service as its own process
(identical to `python -m <package>`)."""

from __future__ import annotations

import importlib

import typer

SERVICES = {
    "gateway": ("cadenza_gateway.__main__", "The HTTP API (FastAPI)."),
    "orchestrator": ("cadenza_orchestrator.__main__", "Plans runs and drives their state machine."),
    "worker": ("cadenza_worker.__main__", "Runs tasks (tools, agents) idempotently."),
    "rag-ingest": ("cadenza_rag.__main__", "Ingests documents for retrieval."),
    "trigger": (
        "cadenza_trigger.__main__",
        "Starts runs from upstream Kafka events (triggers) and cron schedules.",
    ),
}


def register(app: typer.Typer) -> None:
    for name, (module, help_text) in SERVICES.items():

        def command(module: str = module) -> None:
            importlib.import_module(module).main()

        app.command(name, help=help_text)(command)

"""`cadenza dev`: every service in one process on the in-process bus, SQLite, an embedded
Redis substitute, a local-folder object store and Qdrant's embedded local mode. Same
services, same handlers; only the adapters differ from a distributed deployment."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from cadenza_events import BusSettings
from cadenza_runtime import Resources, open_resources, setup_logging, setup_tracing
from cadenza_state import StateSettings

from .bundles import BundleError, submit_run
from .client import ApiError, cadenza, print_json, wait_for_run
from .inputs import parse_inputs


def dev_settings(data_dir: Path) -> tuple[BusSettings, StateSettings]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return (
        BusSettings(backend="memory"),
        StateSettings(
            database_url=f"sqlite+aiosqlite:///{data_dir / 'cadenza.db'}",
            redis_backend="memory",
            object_store="local",
            object_store_dir=data_dir / "objects",
        ),
    )


class DevStack:
    """Gateway + orchestrator + worker + rag-ingest + trigger service (in-memory topics and
    schedules) sharing one set of dev resources and one retriever (the local Qdrant folder serves one client per process)."""

    def __init__(self, resources: Resources, port: int, data_dir: Path) -> None:
        from cadenza_gateway import GatewaySettings, create_app
        from cadenza_gateway.auth import AuthSettings
        from cadenza_orchestrator import Orchestrator, OrchestratorSettings
        from cadenza_rag import RagIngest, RagSettings
        from cadenza_retrieval import RetrievalSettings, Retriever
        from cadenza_trigger import TriggerService, TriggerSettings
        from cadenza_worker import Worker, WorkerSettings, builtin_tools

        self.resources = resources
        self.retriever = Retriever(RetrievalSettings(qdrant_path=data_dir / "qdrant"))
        self.orchestrator = Orchestrator(resources, OrchestratorSettings(metrics_port=0))
        worker_settings = WorkerSettings(metrics_port=0)
        self.worker = Worker(
            resources,
            worker_settings,
            tools=builtin_tools(worker_settings, searcher=self.retriever),
        )
        self.rag = RagIngest(resources, RagSettings(metrics_port=0), self.retriever)
        self.triggers = TriggerService(resources, TriggerSettings(metrics_port=0))
        # Dev mode: requests without a credential act as the default tenant with every
        # scope (loopback only; a key that is sent is still checked).
        gateway_settings = GatewaySettings(
            host="127.0.0.1", port=port, auth=AuthSettings(anonymous_access=True)
        )
        app = create_app(resources, gateway_settings, searcher=self.retriever)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self._serve: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await self.orchestrator.start()
        await self.worker.start()
        await self.rag.start()
        await self.triggers.start()
        self._serve = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._serve.done():
                self._serve.result()  # surfaces e.g. "address already in use"
                raise RuntimeError("gateway stopped during start-up")
            await asyncio.sleep(0.02)

    async def wait(self) -> None:
        assert self._serve is not None
        await self._serve

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._serve is not None:
            with contextlib.suppress(Exception):
                await self._serve
        await self.triggers.stop()
        await self.rag.stop()
        await self.worker.stop()
        await self.orchestrator.stop()
        await self.retriever.aclose()
        await self.resources.close()


async def _dev(run: str | None, inputs: dict[str, Any], port: int, data_dir: Path) -> int:
    setup_tracing("cadenza-dev")
    resources = await open_resources(*dev_settings(data_dir))
    stack = DevStack(resources, port, data_dir)
    await stack.start()
    try:
        if run is None:
            typer.echo(f"cadenza dev: API on {stack.url} (docs at {stack.url}/docs); Ctrl-C stops")
            await stack.wait()
            return 0
        # api_key="": the in-process stack is anonymous; a $CADENZA_API_KEY is not its.
        async with cadenza(stack.url, api_key="") as client:
            accepted = await submit_run(client, run, inputs)
            typer.echo(f"run {accepted.id} accepted; tasks:", err=True)
            # Generous: agent tasks on the embedded CPU model can take minutes on a busy machine.
            done = await asyncio.wait_for(wait_for_run(client, accepted.id), timeout=900)
        print_json(
            {"id": done.id, "status": done.status, "output": done.output, "error": done.error}
        )
        return 0 if done.status == "succeeded" else 1
    except (ApiError, BundleError) as exc:
        typer.echo(str(exc), err=True)
        return 2
    finally:
        await stack.stop()


def dev_command(
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="Run this workflow file, bundle directory (agents/, data/, workflow.yaml) or "
            "registered name end to end, print its result and exit.",
        ),
    ] = None,
    inputs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="key=value (JSON values allowed).")
    ] = None,
    port: Annotated[
        int, typer.Option(help="Gateway port (0 picks a free one; default 0 with --run).")
    ] = -1,
    data_dir: Annotated[Path, typer.Option(help="Where dev state (SQLite, objects) lives.")] = Path(
        ".cadenza/dev"
    ),
    fresh: Annotated[bool, typer.Option(help="Delete the dev state first.")] = False,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "WARNING",
) -> None:
    """Run gateway, orchestrator, worker and rag-ingest in one process (no external
    services needed)."""
    setup_logging(log_level)
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    if port < 0:
        port = 0 if run else 8080
    code = asyncio.run(_dev(run, parse_inputs(inputs), port, data_dir))
    sys.stdout.flush()
    raise typer.Exit(code)

"""The gateway as a service object (start/stop), so `cadenza dev` can run it in one
process with the other services on shared Resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator

import uvicorn
from cadenza_runtime import Resources

from .app import create_app
from .settings import GatewaySettings

log = logging.getLogger("cadenza.gateway")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the hosting process owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Gateway:
    """Serves the HTTP API on ``settings.host:settings.port`` until ``stop()``."""

    def __init__(
        self, resources: Resources, settings: GatewaySettings, *, owns_resources: bool = False
    ) -> None:
        self.settings = settings
        self.app = create_app(resources, settings, owns_resources=owns_resources)
        config = uvicorn.Config(
            self.app,
            host=settings.host,
            port=settings.port,
            log_config=None,  # the process's logging set-up applies
            lifespan="on",
            access_log=False,  # request metrics and spans cover access
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        servers = getattr(self._server, "servers", [])
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.settings.port

    async def start(self) -> None:
        """Return once the server listens; raise if it cannot (e.g. the port is taken)."""
        self._task = asyncio.create_task(self._serve(), name="gateway-http")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise the start-up failure
                raise RuntimeError("the gateway stopped during start-up")
            await asyncio.sleep(0.01)
        log.info("gateway listening on http://%s:%d", self.settings.host, self.port)

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit as exc:  # uvicorn exits the process when it cannot bind
            raise RuntimeError(
                f"gateway could not start on {self.settings.host}:{self.settings.port}"
            ) from exc

    async def stop(self) -> None:
        """Stop accepting connections, let in-flight requests finish, then shut down."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await self._task
        self._task = None

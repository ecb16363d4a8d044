"""An ASGI app served by uvicorn inside a service's event loop (start/stop), so a process
can serve HTTP beside its consumers and own its signals (`run_until_signal`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator
from typing import Any

import uvicorn

log = logging.getLogger("cadenza.http")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the hosting process owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """Serves ``app`` on ``host:port`` (0 = any free port) from ``start()`` to ``stop()``."""

    def __init__(self, app: Any, host: str, port: int, *, name: str = "http") -> None:
        self.host = host
        self.requested_port = port
        self.name = name
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,  # the process's logging set-up applies
            lifespan="on",
            access_log=False,  # request metrics and spans cover access
            # httptools' C parser, not h11's pure-Python one (uvicorn's fallback when
            # httptools is missing): h11 doubled the server's own CPU per request.
            http="httptools",
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        for server in getattr(self._server, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.requested_port

    async def start(self) -> None:
        """Return once the server listens; raise if it cannot (e.g. the port is taken)."""
        self._task = asyncio.create_task(self._serve(), name=f"{self.name}-http")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise the start-up failure
                raise RuntimeError(f"the {self.name} server stopped during start-up")
            await asyncio.sleep(0.01)
        log.info("%s listening on http://%s:%d", self.name, self.host, self.port)

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit as exc:  # uvicorn exits the process when it cannot bind
            raise RuntimeError(
                f"{self.name} could not start on {self.host}:{self.requested_port}"
            ) from exc

    async def stop(self) -> None:
        """Stop accepting connections, let in-flight requests finish, then shut down."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await self._task
        self._task = None

"""The gateway as a service object (start/stop), so `cadenza dev` can run it in one
process with the other services on shared Resources."""

from __future__ import annotations

from cadenza_runtime import HttpServer, Resources

from .app import create_app
from .settings import GatewaySettings


class Gateway:
    """Serves the HTTP API on ``settings.host:settings.port`` until ``stop()``."""

    def __init__(
        self, resources: Resources, settings: GatewaySettings, *, owns_resources: bool = False
    ) -> None:
        self.settings = settings
        self.app = create_app(resources, settings, owns_resources=owns_resources)
        self._server = HttpServer(self.app, settings.host, settings.port, name="gateway")

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        return self._server.port

    async def start(self) -> None:
        """Return once the server listens; raise if it cannot (e.g. the port is taken)."""
        await self._server.start()

    async def stop(self) -> None:
        """Stop accepting connections, let in-flight requests finish, then shut down."""
        await self._server.stop()

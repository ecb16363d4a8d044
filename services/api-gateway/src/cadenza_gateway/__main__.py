"""`python -m cadenza_gateway`: the HTTP API as its own process."""

from __future__ import annotations

import logging
import os

from cadenza_events import BusSettings
from cadenza_runtime import (
    open_resources,
    run_service,
    run_until_signal,
    setup_logging,
    setup_tracing,
)
from cadenza_state import StateSettings

from .server import Gateway
from .settings import GatewaySettings

log = logging.getLogger("cadenza.gateway")


async def serve(settings: GatewaySettings) -> None:
    """Open Resources from the environment and serve until SIGTERM/SIGINT; the app's
    shutdown (after in-flight requests finish) closes the resources."""
    state_settings = StateSettings()
    if insecure := state_settings.insecure_defaults():
        log.warning(
            "state settings still use the well-known local defaults: %s", ", ".join(insecure)
        )
    resources = await open_resources(BusSettings(), state_settings)
    gateway = Gateway(resources, settings, owns_resources=True)
    try:
        await run_until_signal(gateway.start, gateway.stop)
    finally:
        await gateway.stop()


def main() -> None:
    setup_logging(os.environ.get("CADENZA_LOG_LEVEL", "INFO"))
    setup_tracing("cadenza-gateway")
    run_service(serve(GatewaySettings()))


if __name__ == "__main__":
    main()

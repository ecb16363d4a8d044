"""``python -m cadenza_orchestrator``: run the orchestrator until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os

from cadenza_events import BusSettings
from cadenza_runtime import (
    open_resources,
    run_service,
    run_until_signal,
    serve_metrics,
    setup_logging,
    setup_tracing,
)
from cadenza_state import StateSettings

from .service import Orchestrator
from .settings import OrchestratorSettings

log = logging.getLogger("cadenza.orchestrator")


async def serve(settings: OrchestratorSettings | None = None) -> None:
    settings = settings or OrchestratorSettings()
    state_settings = StateSettings()
    insecure = state_settings.insecure_defaults()
    if insecure:
        message = f"state settings use well-known local credentials: {', '.join(insecure)}"
        if settings.refuse_insecure_defaults:
            raise SystemExit(message)
        log.warning("%s (fine for local infra; set real secrets in production)", message)
    resources = await open_resources(BusSettings(), state_settings)
    try:
        orchestrator = Orchestrator(resources, settings)
        await run_until_signal(orchestrator.start, orchestrator.stop)
    finally:
        await resources.close()


def main() -> None:
    setup_logging(os.environ.get("CADENZA_LOG_LEVEL", "INFO"))
    setup_tracing("cadenza-orchestrator")
    settings = OrchestratorSettings()
    serve_metrics(settings.metrics_port)
    run_service(serve(settings))


if __name__ == "__main__":
    main()

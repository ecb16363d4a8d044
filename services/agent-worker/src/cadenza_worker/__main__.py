"""`python -m cadenza_worker`: one worker process on the configured bus and state."""

from __future__ import annotations

import logging

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

from .settings import WorkerSettings
from .worker import Worker

log = logging.getLogger("cadenza.worker")


async def serve(settings: WorkerSettings) -> None:
    state_settings = StateSettings()
    if insecure := state_settings.insecure_defaults():
        log.warning("state settings still use the well-known local credentials: %s", insecure)
    resources = await open_resources(BusSettings(), state_settings)
    try:
        serve_metrics(settings.metrics_port)
        worker = Worker(resources, settings)
        await run_until_signal(worker.start, worker.stop)
    finally:
        await resources.close()


def main() -> None:
    settings = WorkerSettings()
    setup_logging(settings.log_level)
    setup_tracing("cadenza-worker")
    run_service(serve(settings))


if __name__ == "__main__":
    main()

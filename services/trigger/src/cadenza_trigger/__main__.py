"""`python -m cadenza_trigger`: the trigger service as its own process."""

from __future__ import annotations

from cadenza_runtime import (
    open_resources,
    run_service,
    run_until_signal,
    serve_metrics,
    setup_logging,
    setup_tracing,
)

from .service import TriggerService
from .settings import TriggerSettings


async def serve(settings: TriggerSettings) -> None:
    # This process creates runs: its outbox rows are published by its own relay right away.
    resources = await open_resources()
    service = TriggerService(resources, settings)

    async def stop() -> None:
        await service.stop()
        await resources.close()

    await run_until_signal(service.start, stop)


def main() -> None:
    setup_logging()
    setup_tracing("cadenza-trigger")
    settings = TriggerSettings()
    serve_metrics(settings.metrics_port)
    run_service(serve(settings))


if __name__ == "__main__":
    main()

"""`python -m cadenza_rag`: the rag-ingest service as its own process."""

from __future__ import annotations

import asyncio

from cadenza_runtime import (
    open_resources,
    run_until_signal,
    serve_metrics,
    setup_logging,
    setup_tracing,
)

from .service import RagIngest
from .settings import RagSettings


async def serve(settings: RagSettings) -> None:
    resources = await open_resources(start_relay=False)
    service = RagIngest(resources, settings)

    async def stop() -> None:
        await service.stop()
        await resources.close()

    await run_until_signal(service.start, stop)


def main() -> None:
    setup_logging()
    setup_tracing("cadenza-rag-ingest")
    settings = RagSettings()
    serve_metrics(settings.metrics_port)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()

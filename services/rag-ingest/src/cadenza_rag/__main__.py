"""`python -m cadenza_rag`: the rag-ingest service as its own process: the `doc.ingest`
consumer and, unless `CADENZA_RAG_SEARCH_PORT=0`, the search API on the same store."""

from __future__ import annotations

from cadenza_retrieval import RetrievalSettings, Retriever
from cadenza_runtime import (
    HttpServer,
    open_resources,
    require_token_off_loopback,
    run_service,
    run_until_signal,
    serve_metrics,
    setup_logging,
    setup_tracing,
)

from .search_api import create_search_app
from .service import RagIngest
from .settings import RagSettings


async def serve(settings: RagSettings) -> None:
    retrieval = RetrievalSettings()
    token = retrieval.search_token.get_secret_value()
    if settings.search_port:
        require_token_off_loopback(
            settings.search_host,
            token,
            what="the search API",
            variable="CADENZA_RETRIEVAL_SEARCH_TOKEN",
        )
    resources = await open_resources(start_relay=False)
    retriever = Retriever(retrieval)  # one store and one model for ingest and searches
    service = RagIngest(resources, settings, retriever)
    http = (
        HttpServer(
            create_search_app(retriever, resources.sessions, token=token),
            settings.search_host,
            settings.search_port,
            name="rag-search",
        )
        if settings.search_port
        else None
    )

    async def start() -> None:
        await service.start()
        if http is not None:
            await http.start()

    async def stop() -> None:
        if http is not None:
            await http.stop()
        await service.stop()
        await retriever.aclose()
        await resources.close()

    await run_until_signal(start, stop)


def main() -> None:
    setup_logging()
    setup_tracing("cadenza-rag-ingest")
    settings = RagSettings()
    serve_metrics(settings.metrics_port)
    run_service(serve(settings))


if __name__ == "__main__":
    main()

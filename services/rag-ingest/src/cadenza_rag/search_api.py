"""rag-ingest's search API: ``POST /v1/search`` for the gateway and workers when they run
as separate processes and the vector store is Qdrant's embedded local mode, which only
the process that opened it can read (``CADENZA_RETRIEVAL_SEARCH_URL`` points them here).

An internal API: the caller (gateway, worker) has already authenticated the tenant and
sends it in ``X-Tenant-Id``, so only those services may call it: they prove it with the
service token ``CADENZA_RETRIEVAL_SEARCH_TOKEN`` (a bearer token). Without a token it
listens only on loopback (``CADENZA_RAG_SEARCH_HOST``; ``__main__`` refuses anything else).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from cadenza_retrieval import (
    Searcher,
    SearchQuery,
    SearchResults,
    visible_generations,
)
from cadenza_retrieval.searching import SEARCH_PATH, TENANT_HEADER
from cadenza_runtime import bearer_matches
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry import propagate, trace
from prometheus_client import Counter

from . import records

tracer = trace.get_tracer("cadenza.rag")
SEARCHES = Counter(
    "cadenza_rag_search_requests_total",
    "Searches served by the search API, by outcome.",
    ["outcome"],
)


class RemoteSearchQuery(SearchQuery):
    collection: str


def create_search_app(
    searcher: Searcher, sessions: records.Sessions, *, token: str = ""
) -> FastAPI:
    app = FastAPI(title="Cadenza rag-ingest search", docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def service_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Before validation: a caller without the token learns nothing about the API.
        if request.url.path == "/healthz" or bearer_matches(
            request.headers.get("authorization"), token
        ):
            return await call_next(request)
        SEARCHES.labels("unauthenticated").inc()
        return JSONResponse(
            {"detail": "the search API needs the service token (CADENZA_RETRIEVAL_SEARCH_TOKEN)"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="cadenza-search"'},
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable line naming the fields; RemoteSearcher raises it as ValueError.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        SEARCHES.labels("invalid").inc()
        return JSONResponse({"detail": problems}, status_code=422)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(SEARCH_PATH)
    async def search(
        body: RemoteSearchQuery,
        request: Request,
        tenant: Annotated[str, Header(alias=TENANT_HEADER, min_length=1, max_length=64)],
    ) -> SearchResults:
        parent = propagate.extract(dict(request.headers))
        with tracer.start_as_current_span(
            "rag.search",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={"cadenza.tenant_id": tenant, "cadenza.collection": body.collection},
        ):
            if not await records.collection_exists(sessions, tenant, body.collection):
                SEARCHES.labels("unknown_collection").inc()
                raise HTTPException(404, f"no collection named {body.collection!r}")
            try:
                hits = await searcher.search(
                    tenant,
                    body.collection,
                    body.query,
                    k=body.k,
                    mode=body.mode,
                    filters=body.filters,
                    generations=visible_generations(sessions, tenant),
                )
            except ValueError as exc:
                SEARCHES.labels("invalid").inc()
                raise HTTPException(422, str(exc)) from None
            SEARCHES.labels("ok").inc()
            return SearchResults(hits=hits)

    return app

"""How the gateway and the ``rag_search`` tool search: in process (a :class:`Retriever` on
the vector store) or through rag-ingest's search API (:class:`RemoteSearcher`).

Qdrant's embedded local mode locks its folder to one process. When the services run as
separate processes without a Qdrant server, rag-ingest owns the store and serves
``POST /v1/search``; the others set ``CADENZA_RETRIEVAL_SEARCH_URL`` to reach it. Both
return the same :class:`SearchHit` list, so callers cannot tell the difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import httpx
from opentelemetry import propagate, trace
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from .catalog import GenerationLookup
from .models import FilterValue, SearchHit
from .retriever import Retriever, check_search
from .settings import RetrievalSettings, SearchMode

tracer = trace.get_tracer("cadenza.retrieval")

SEARCH_PATH = "/v1/search"
TENANT_HEADER = "X-Tenant-Id"


class Searcher(Protocol):
    """What a caller of search needs; :class:`Retriever` and :class:`RemoteSearcher`."""

    async def search(
        self,
        tenant_id: str,
        collection: str,
        query: str,
        *,
        k: int = 5,
        mode: SearchMode | None = None,
        filters: Mapping[str, FilterValue] | None = None,
        generations: GenerationLookup | None = None,
    ) -> list[SearchHit]: ...

    async def aclose(self) -> None: ...


class SearchUnavailable(RuntimeError):
    """The search service could not answer (down, or failed); retrying later may work."""


class UnknownCollection(LookupError):
    """The tenant has no collection of that name."""


class RemoteSearcher:
    """Searches through rag-ingest's ``POST /v1/search`` (``CADENZA_RETRIEVAL_SEARCH_URL``).

    The service applies the documents table's visible generations itself (it shares the
    database), so ``generations`` is accepted for interface parity and not sent."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        token: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # The service token travels only in this header (never on spans or in errors).
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout_s, transport=transport, headers=headers
        )

    async def search(
        self,
        tenant_id: str,
        collection: str,
        query: str,
        *,
        k: int = 5,
        mode: SearchMode | None = None,
        filters: Mapping[str, FilterValue] | None = None,
        generations: GenerationLookup | None = None,
    ) -> list[SearchHit]:
        check_search(query, k)
        body: dict[str, Any] = {"collection": collection, "query": query, "k": k}
        if mode is not None:
            body["mode"] = mode
        if filters:
            body["filters"] = dict(filters)
        with tracer.start_as_current_span(
            "retrieval.remote_search",
            kind=trace.SpanKind.CLIENT,
            attributes={"cadenza.collection": collection, "server.address": self.base_url},
        ):
            headers = {TENANT_HEADER: tenant_id}
            propagate.inject(headers)  # rag-ingest's span joins the caller's trace
            try:
                response = await self._post(body, headers)
            except httpx.TransportError as exc:
                raise SearchUnavailable(
                    f"search service at {self.base_url} unreachable ({type(exc).__name__}); "
                    "is rag-ingest running with its search API (CADENZA_RAG_SEARCH_PORT)?"
                ) from exc
        if response.status_code == 200:
            return [SearchHit.model_validate(hit) for hit in response.json()["hits"]]
        detail = _detail(response)
        if response.status_code == 404:
            raise UnknownCollection(detail)
        if response.status_code == 422:
            raise ValueError(detail)
        if response.status_code == 401:
            raise SearchUnavailable(
                f"search service at {self.base_url} refused this service's token: set the "
                "same CADENZA_RETRIEVAL_SEARCH_TOKEN on rag-ingest, the gateway and workers"
            )
        raise SearchUnavailable(
            f"search service at {self.base_url} answered {response.status_code}: {detail}"
        )

    @retry(
        retry=retry_if_exception_type(httpx.TransportError),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    async def _post(self, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        """Connection failures are retried briefly (a restarting rag-ingest); an answer,
        even an error, is not."""
        return await self._client.post(SEARCH_PATH, json=body, headers=headers)

    async def aclose(self) -> None:
        await self._client.aclose()


def _detail(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200]
    detail = payload.get("detail") if isinstance(payload, dict) else None
    return str(detail if detail is not None else payload)[:500]


def open_searcher(settings: RetrievalSettings | None = None) -> Searcher:
    """A :class:`RemoteSearcher` when ``search_url`` is set, else an in-process
    :class:`Retriever` (which opens the vector store now: callers open this lazily)."""
    settings = settings or RetrievalSettings()
    if settings.search_url:
        return RemoteSearcher(
            settings.search_url,
            timeout_s=settings.search_timeout_s,
            token=settings.search_token.get_secret_value(),
        )
    return Retriever(settings)

"""What goes into the index (chunks) and what comes out of a search (hits with citations).

The hit shape is a contract: the gateway's search endpoint and the agents' ``rag_search``
tool both return ``{"hits": [SearchHit...]}``, so an agent can quote the citation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from .settings import SearchMode

MAX_K = 50
MAX_QUERY_CHARS = 2000

FilterValue = str | int | bool | list[str] | list[int]
"""What a search filter matches a payload field against (a list: any of its values)."""


class Chunk(BaseModel):
    """One passage of a document, with where it came from."""

    model_config = ConfigDict(frozen=True)

    text: str
    position: int = Field(ge=0, description="0-based index of the chunk in its document.")
    page: int | None = Field(default=None, ge=1, description="1-based page (PDFs).")
    heading: str | None = Field(default=None, description="Nearest heading above the chunk.")


class Citation(BaseModel):
    """Where a hit comes from, precise enough to quote and to open."""

    document_id: str
    title: str = Field(description="The document's title or file name.")
    collection: str
    position: int = Field(description="0-based chunk index in the document.")
    page: int | None = Field(default=None, description="1-based page, for paged documents.")
    heading: str | None = Field(default=None, description="Nearest heading above the chunk.")


class SearchHit(BaseModel):
    """A matching chunk: its text, a relevance score (higher is better) and its citation."""

    text: str
    score: float = Field(
        description="Cosine similarity (`vector` mode) or reciprocal-rank-fusion score "
        "(`hybrid` mode); comparable only within one search."
    )
    citation: Citation
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="The document's metadata given at upload."
    )


class DocumentInfo(BaseModel):
    """What every chunk of a document carries besides its own position."""

    model_config = ConfigDict(frozen=True)

    document_id: str
    title: str
    collection: str
    metadata: dict[str, Any] = Field(default_factory=dict)


# What the vector store matches exactly: keywords, integers, booleans. Strict, so a decimal,
# or a boolean standing in for an integer (`[false]`), is a 422 naming the filter instead of
# being coerced or failing deep in the store.
FilterScalar = StrictStr | StrictInt | StrictBool


class SearchQuery(BaseModel):
    """A search's body, as the gateway and rag-ingest's search API take it."""

    @field_validator("k", mode="before")
    @classmethod
    def _k_is_a_json_integer(cls, value: Any) -> Any:
        # `true` is no count (lax mode read it as 1); `5.0` is one, as JSON Schema says.
        if isinstance(value, bool | str):
            raise ValueError("must be a JSON integer")
        return value

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(default=5, ge=1, le=MAX_K, description="How many chunks to return.")
    mode: SearchMode | None = Field(
        default=None, description="`vector` or `hybrid` (default: the server's setting)."
    )
    filters: dict[str, FilterScalar | list[StrictStr] | list[StrictInt]] = Field(
        default_factory=dict,
        description="Equality filters: `document_id`, `page`, or a key of the documents' "
        "metadata; a list matches any of its values. Values are strings, integers or "
        "booleans (no decimals: matching is exact).",
    )


class SearchResults(BaseModel):
    hits: list[SearchHit]

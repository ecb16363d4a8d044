"""Which generation of each document a search may show (the store's replace rule), without
Qdrant: a process that only reads hits (the gateway, a worker searching through rag-ingest)
never loads the Qdrant client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from .models import SearchHit


class Candidate(NamedTuple):
    """A hit as the store found it, with the generation of the document it came from."""

    hit: SearchHit
    generation: int


def newest_generations(candidates: Sequence[Candidate]) -> dict[str, int]:
    """Per document, the newest generation among ``candidates`` (the visibility rule when
    no catalog says which generation is committed)."""
    newest: dict[str, int] = {}
    for c in candidates:
        doc = c.hit.citation.document_id
        newest[doc] = max(c.generation, newest.get(doc, c.generation))
    return newest


def visible_hits(
    candidates: Sequence[Candidate], generations: Mapping[str, int]
) -> list[SearchHit]:
    """Candidates whose generation is their document's visible one (documents missing from
    ``generations`` — deleted, or never committed — are dropped)."""
    return [
        c.hit for c in candidates if generations.get(c.hit.citation.document_id) == c.generation
    ]

"""cadenza_rag: document ingestion for retrieval-augmented agents."""

from .chunking import chunk_sections, chunk_text
from .parsing import DocumentError, Section, parse_document
from .search_api import create_search_app
from .service import RagIngest
from .settings import RagSettings

__all__ = [
    "DocumentError",
    "RagIngest",
    "RagSettings",
    "Section",
    "chunk_sections",
    "chunk_text",
    "create_search_app",
    "parse_document",
]

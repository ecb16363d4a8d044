"""cadenza_rag: document ingestion for retrieval-augmented agents."""

from .chunking import chunk_text
from .service import RagIngest, chunks_key
from .settings import RagSettings

__all__ = ["RagIngest", "RagSettings", "chunk_text", "chunks_key"]

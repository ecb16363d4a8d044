"""Split sections into overlapping chunks on paragraph/sentence boundaries where possible;
each chunk keeps its section's page and heading."""

from __future__ import annotations

from collections.abc import Iterable

from cadenza_retrieval import Chunk

from .parsing import Section


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    text = text.strip()
    if not text:
        return []
    overlap = min(overlap, size // 2)
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            # Prefer to cut at a paragraph, then a sentence, then a word boundary.
            for sep in ("\n\n", ". ", " "):
                cut = text.rfind(sep, start + size // 2, end)
                if cut != -1:
                    end = cut + len(sep)
                    break
        chunks.append(text[start:end].strip())
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
        # Start the overlap on a word, not in the middle of one.
        space = text.find(" ", start, end)
        if space != -1 and space - start < overlap // 2:
            start = space + 1
    return [c for c in chunks if c]


def chunk_sections(sections: Iterable[Section], size: int, overlap: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for section in sections:
        for text in chunk_text(section.text, size, overlap):
            chunks.append(
                Chunk(text=text, position=len(chunks), page=section.page, heading=section.heading)
            )
    return chunks

"""Document formats the ingest reads, by media type (and by file extension as a fallback)."""

from __future__ import annotations

from pathlib import PurePosixPath

SUPPORTED_TYPES: dict[str, str] = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/json": "json",
    "application/pdf": "pdf",
}
EXTENSIONS: dict[str, str] = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".json": "application/json",
    ".pdf": "application/pdf",
}


def resolve_content_type(declared: str | None, filename: str | None) -> str | None:
    """A supported media type from the declared one, else from the file extension; None
    when neither names a supported type. Generic declarations (octet-stream) defer to the
    extension."""
    media = (declared or "").split(";", 1)[0].strip().lower()
    if media in SUPPORTED_TYPES:
        return media
    suffix = PurePosixPath(filename or "").suffix.lower()
    if media in ("", "application/octet-stream", "binary/octet-stream"):
        return EXTENSIONS.get(suffix)
    return None

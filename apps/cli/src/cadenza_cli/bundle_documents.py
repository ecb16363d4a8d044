"""A bundle's document collections: ``collections/<name>/`` folders whose files (txt, md,
html, json, pdf) are uploaded for retrieval, titled by their file names.

Deploying creates each collection if missing, uploads new files, replaces a document whose
title matches but whose content changed (instead of adding a second one), leaves identical
ones alone, then waits until every document is indexed by rag-ingest.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from cadenza_client import ApiError, AsyncCadenza, Conflict, Document

T = TypeVar("T")

COLLECTIONS_DIR = "collections"
COLLECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # the gateway's rule
# The extensions rag-ingest reads (cadenza_retrieval.EXTENSIONS; not imported: it loads
# onnxruntime and qdrant, seconds of CLI start-up).
CONTENT_TYPES: dict[str, str] = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".html": "text/html",
    ".json": "application/json",
    ".pdf": "application/pdf",
}
LIST_PAGE = 100
INDEX_TIMEOUT_S = 300.0
POLL_INTERVAL_S = 0.5


class CollectionProblem(Exception):
    """A collection folder or document that cannot be deployed; the message names it."""


@dataclass(frozen=True)
class BundleDocument:
    path: Path
    title: str  # the file name
    content_type: str


@dataclass(frozen=True)
class BundleCollection:
    path: Path
    name: str
    documents: list[BundleDocument]


def load_collections(root: Path, shown: Callable[[Path], str]) -> list[BundleCollection]:
    """The bundle's ``collections/*/`` folders, checked (nothing is sent)."""
    folder = root / COLLECTIONS_DIR
    if not folder.is_dir():
        return []
    collections = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue  # .DS_Store and the like
        if not path.is_dir():
            raise CollectionProblem(
                f"{shown(path)}: documents go in a collection folder, "
                f"{COLLECTIONS_DIR}/<name>/{path.name}"
            )
        if not COLLECTION_NAME.match(path.name):
            raise CollectionProblem(
                f"{shown(path)}: invalid collection name {path.name!r} (lower-case letters, "
                "digits, '_' and '-', starting with a letter or digit, up to 64 characters)"
            )
        collections.append(BundleCollection(path, path.name, _load_documents(path, shown)))
    return collections


def _load_documents(folder: Path, shown: Callable[[Path], str]) -> list[BundleDocument]:
    documents = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        content_type = CONTENT_TYPES.get(path.suffix.lower()) if path.is_file() else None
        if content_type is None:
            accepted = ", ".join(s.lstrip(".") for s in CONTENT_TYPES)
            raise CollectionProblem(f"{shown(path)}: not a document: use {accepted} files")
        if path.stat().st_size == 0:
            raise CollectionProblem(f"{shown(path)}: the file is empty")
        documents.append(BundleDocument(path, path.name, content_type))
    return documents


async def deploy_collection(
    client: AsyncCadenza,
    collection: BundleCollection,
    shown: Callable[[Path], str],
    out: TextIO,
    *,
    timeout_s: float = INDEX_TIMEOUT_S,
    poll_s: float = POLL_INTERVAL_S,
) -> None:
    """Create the collection if missing, upload/replace its documents and wait until each
    is indexed. Raises :class:`CollectionProblem` naming the folder or file."""
    try:
        await client.create_collection(collection.name)
    except Conflict:
        pass  # it exists already, which is fine
    except ApiError as exc:
        raise CollectionProblem(f"{shown(collection.path)}: {exc}") from None
    existing = await _existing_by_title(client, collection, shown)
    pending: list[tuple[BundleDocument, Document, bool]] = []
    for doc in collection.documents:
        content = doc.path.read_bytes()
        digest = hashlib.sha256(content).hexdigest()
        same_title = existing.get(doc.title, [])
        match = next((d for d in same_title if d.content_hash == digest), None)
        if match is not None:
            pending.append((doc, match, False))
            continue
        if same_title:  # newest first: replace that one rather than add a duplicate title
            sent = client.replace_document(
                collection.name, same_title[0].id, doc.path.name, content, doc.content_type
            )
        else:
            sent = client.upload_document(
                collection.name, doc.path.name, content, doc.content_type, title=doc.title
            )
        upload = await _or_problem(sent, shown(doc.path))
        pending.append((doc, upload, upload.accepted))  # not accepted: same bytes exist
    deadline = time.monotonic() + timeout_s
    for doc, record, uploaded in pending:
        done = await _indexed(client, collection, doc, record, shown, deadline, poll_s)
        state = f"indexed ({done.chunk_count} chunks)" if uploaded else "unchanged"
        label = f"{collection.name}/{doc.title}"
        print(f"  document {label:<29} {state}", file=out)


async def _or_problem(request: Awaitable[T], where: str) -> T:
    """The answer, or the gateway's problem as a :class:`CollectionProblem` naming ``where``."""
    try:
        return await request
    except ApiError as exc:
        raise CollectionProblem(f"{where}: {exc}") from None


async def _existing_by_title(
    client: AsyncCadenza, collection: BundleCollection, shown: Callable[[Path], str]
) -> dict[str, list[Document]]:
    """The collection's documents by title, each list newest first."""
    by_title: dict[str, list[Document]] = {}

    async def every_document() -> None:
        async for item in client.iter_documents(collection.name, page_size=LIST_PAGE):
            by_title.setdefault(item.title, []).append(item)

    await _or_problem(every_document(), shown(collection.path))
    return by_title


async def _indexed(
    client: AsyncCadenza,
    collection: BundleCollection,
    doc: BundleDocument,
    record: Document,
    shown: Callable[[Path], str],
    deadline: float,
    poll_s: float,
) -> Document:
    """Poll the document until it is `indexed`; `failed` or the deadline is a problem."""
    while True:
        if record.status == "indexed":
            return record
        if record.status == "failed":
            raise CollectionProblem(f"{shown(doc.path)}: ingestion failed: {record.error}")
        if time.monotonic() >= deadline:
            raise CollectionProblem(
                f"{shown(doc.path)}: still {record.status} when the wait for indexing "
                "ended (is rag-ingest running?)"
            )
        await asyncio.sleep(poll_s)
        record = await _or_problem(client.get_document(collection.name, record.id), shown(doc.path))

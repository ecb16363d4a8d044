"""Document uploads: measured, hashed and written to the object store as they stream.

The multipart parser spools the file to a temporary file (memory up to 1 MiB, then disk);
from there it is hashed and copied to the object store in fixed-size pieces — MinIO/S3
gets the stream itself — so a 25 MiB document never sits in memory whole.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import BinaryIO

from cadenza_state import ObjectStore, S3ObjectStore

PIECE = 1024 * 1024


@dataclass(frozen=True)
class Measured:
    size: int
    sha256: str
    head: bytes
    """The first bytes, to check a declared type (a PDF starts with ``%PDF-``)."""


def _measure(file: BinaryIO, limit: int) -> Measured | None:
    """Size and sha256 of ``file`` read to its end; None as soon as it passes ``limit``."""
    file.seek(0)
    digest = hashlib.sha256()
    size = 0
    head = b""
    while piece := file.read(PIECE):
        if not head:
            head = piece[:16]
        size += len(piece)
        if size > limit:
            return None
        digest.update(piece)
    return Measured(size, digest.hexdigest(), head)


async def measure(file: BinaryIO, limit: int) -> Measured | None:
    return await asyncio.to_thread(_measure, file, limit)


async def store_upload(
    objects: ObjectStore, key: str, file: BinaryIO, size: int, content_type: str
) -> None:
    """Copy ``file`` (``size`` bytes) to ``key``."""

    def stream_to_s3(store: S3ObjectStore) -> None:
        file.seek(0)
        store.client.put_object(
            store.bucket, key, file, size, content_type=content_type, part_size=10 * PIECE
        )

    if isinstance(objects, S3ObjectStore):
        await asyncio.to_thread(stream_to_s3, objects)
        return
    file.seek(0)  # other stores (the dev folder) take bytes
    await objects.put(key, await asyncio.to_thread(file.read), content_type=content_type)

"""Object storage for documents, claim-checked payloads and run artifacts."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from cadenza_state.settings import StateSettings

_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchObject"}
_MAX_KEY_LEN = 1024


class ObjectStoreError(Exception):
    """Base error of the object stores; ``retryable`` tells callers whether to back off."""

    code = "object_store_error"
    retryable = True


class ObjectNotFound(ObjectStoreError):
    """No object under the key."""

    code = "object_not_found"
    retryable = False

    def __init__(self, key: str) -> None:
        super().__init__(f"object not found: {key!r}")
        self.key = key


class InvalidObjectKey(ObjectStoreError, ValueError):
    code = "invalid_object_key"
    retryable = False


def validate_key(key: str) -> str:
    """Accept relative, '/'-separated keys without '.'/'..' segments, so every store
    (and every local path built from a key) stays inside its bucket or root."""
    if not key or len(key) > _MAX_KEY_LEN:
        raise InvalidObjectKey(f"object key must be 1..{_MAX_KEY_LEN} characters")
    if "\\" in key or "\x00" in key or key.startswith("/"):
        raise InvalidObjectKey(f"invalid object key: {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidObjectKey(f"invalid object key: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A folder of keys: a valid key that ends with ``/`` (never the empty prefix, which
    would name the whole bucket)."""
    if not prefix.endswith("/"):
        raise InvalidObjectKey(f"invalid object prefix (must end with '/'): {prefix!r}")
    validate_key(prefix.rstrip("/"))
    return prefix


@runtime_checkable
class ObjectStore(Protocol):
    async def ensure_bucket(self) -> None: ...

    async def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str: ...

    async def get(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def delete_prefix(self, prefix: str) -> int: ...


class S3ObjectStore:
    """MinIO/S3 through the (blocking) ``minio`` client, run in worker threads."""

    def __init__(self, client: Minio, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @classmethod
    def from_settings(cls, settings: StateSettings) -> S3ObjectStore:
        client = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
        )
        return cls(client, settings.s3_bucket)

    async def ensure_bucket(self) -> None:
        def run() -> None:
            if self.client.bucket_exists(self.bucket):
                return
            try:
                self.client.make_bucket(self.bucket)
            except S3Error as exc:  # another service created it meanwhile
                if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

        await asyncio.to_thread(run)

    async def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        validate_key(key)
        await asyncio.to_thread(
            self.client.put_object,
            self.bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type=content_type,
        )
        return key

    async def get(self, key: str) -> bytes:
        validate_key(key)

        def run() -> bytes:
            try:
                response = self.client.get_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in _NOT_FOUND_CODES:
                    raise ObjectNotFound(key) from exc
                raise
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return await asyncio.to_thread(run)

    async def exists(self, key: str) -> bool:
        validate_key(key)

        def run() -> bool:
            try:
                self.client.stat_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in _NOT_FOUND_CODES:
                    return False
                raise
            return True

        return await asyncio.to_thread(run)

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error (idempotent)."""
        validate_key(key)
        await asyncio.to_thread(self.client.remove_object, self.bucket, key)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix`` (a folder: it ends with
        ``/``); returns how many. S3's multi-object delete, 1,000 keys per request."""
        validate_prefix(prefix)

        def run() -> int:
            names = [
                o.object_name
                for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
                if o.object_name is not None
            ]
            failed = list(self.client.remove_objects(self.bucket, (DeleteObject(n) for n in names)))
            if failed:  # the iterator yields only the keys S3 refused
                raise ObjectStoreError(f"could not delete {len(failed)} object(s): {failed[0]}")
            return len(names)

        return await asyncio.to_thread(run)


class LocalObjectStore:
    """Objects as files under ``root`` (dev mode). Writes are atomic (temp file + rename)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / PurePosixPath(validate_key(key))).resolve()
        # Belt and braces against symlinks pointing out of the root.
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidObjectKey(f"invalid object key: {key!r}")
        return path

    async def ensure_bucket(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        path = self._path(key)

        def run() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

        await asyncio.to_thread(run)
        return key

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error (idempotent)."""
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove the folder ``prefix`` names (it ends with ``/``) and every object in it;
        returns how many objects there were."""
        validate_prefix(prefix)
        folder = self._path(prefix.rstrip("/"))

        def run() -> int:
            if not folder.is_dir():
                return 0
            count = sum(1 for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder, ignore_errors=False)
            return count

        return await asyncio.to_thread(run)


def create_object_store(settings: StateSettings) -> ObjectStore:
    if settings.object_store == "local":
        return LocalObjectStore(settings.object_store_dir)
    return S3ObjectStore.from_settings(settings)

"""ObjectStore conformance on MinIO (unique bucket) and the local folder store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cadenza_state import (
    InvalidObjectKey,
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    S3ObjectStore,
    StateSettings,
    create_object_store,
)


async def test_put_get_exists_delete(store: ObjectStore) -> None:
    key = "runs/r1/tasks/a/output.json"
    assert not await store.exists(key)
    assert await store.put(key, b'{"ok": true}', content_type="application/json") == key
    assert await store.exists(key)
    assert await store.get(key) == b'{"ok": true}'
    await store.delete(key)
    assert not await store.exists(key)
    await store.delete(key)  # idempotent


async def test_delete_prefix_removes_one_folder_and_nothing_beside_it(store: ObjectStore) -> None:
    """A run's folder goes whole (nested keys too); a sibling whose name starts the same
    (``runs/r1`` vs ``runs/r10``) and other folders stay."""
    gone = ["runs/r1/tasks/a/params.json", "runs/r1/tasks/a/1/output.json", "runs/r1/x"]
    kept = ["runs/r10/tasks/a/params.json", "runs/r2/x", "documents/r1/x"]
    for key in gone + kept:
        await store.put(key, b"{}")
    assert await store.delete_prefix("runs/r1/") == len(gone)
    assert [await store.exists(k) for k in gone] == [False] * len(gone)
    assert [await store.exists(k) for k in kept] == [True] * len(kept)
    assert await store.delete_prefix("runs/r1/") == 0  # idempotent
    assert await store.delete_prefix("runs/none/") == 0


@pytest.mark.parametrize("prefix", ["", "/", "runs/r1", "runs/../", "../runs/"])
async def test_delete_prefix_rejects_what_is_not_a_folder(store: ObjectStore, prefix: str) -> None:
    await store.put("runs/r1/x", b"{}")
    with pytest.raises(InvalidObjectKey):
        await store.delete_prefix(prefix)
    assert await store.exists("runs/r1/x")


async def test_overwrite_replaces_content(store: ObjectStore) -> None:
    await store.put("doc", b"v1")
    await store.put("doc", b"version two")
    assert await store.get("doc") == b"version two"


async def test_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as err:
        await store.get("nope/missing.bin")
    assert err.value.key == "nope/missing.bin"
    assert err.value.retryable is False


async def test_large_object_round_trip(store: ObjectStore) -> None:
    data = os.urandom(1024 * 1024 + 7)
    await store.put("big/blob.bin", data)
    assert await store.get("big/blob.bin") == data


async def test_empty_object_round_trip(store: ObjectStore) -> None:
    await store.put("empty", b"")
    assert await store.exists("empty")
    assert await store.get("empty") == b""


async def test_ensure_bucket_is_idempotent(store: ObjectStore) -> None:
    await store.ensure_bucket()
    await store.put("k", b"v")
    await store.ensure_bucket()
    assert await store.get("k") == b"v"


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../escape", "a/../../b", "a//b", "a/./b", "a\\b", "nul\x00", "x" * 1025],
)
async def test_unsafe_keys_are_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidObjectKey):
        await store.put(key, b"x")
    with pytest.raises(InvalidObjectKey):
        await store.get(key)


@pytest.mark.unit
async def test_local_store_stays_inside_its_root_through_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    local = LocalObjectStore(tmp_path / "root")
    await local.ensure_bucket()
    (tmp_path / "root" / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidObjectKey):
        await local.put("link/secret", b"x")
    assert not any(outside.iterdir())


@pytest.mark.unit
def test_create_object_store_picks_the_configured_backend(tmp_path: Path) -> None:
    local = create_object_store(StateSettings(object_store="local", object_store_dir=tmp_path))
    assert isinstance(local, LocalObjectStore)
    assert local.root == tmp_path.resolve()
    s3 = create_object_store(StateSettings(object_store="s3", s3_bucket="b"))
    assert isinstance(s3, S3ObjectStore)
    assert s3.bucket == "b"
    assert isinstance(s3, ObjectStore)

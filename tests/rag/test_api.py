"""The collections API end to end: upload → doc.ingest → rag-ingest → search, bad input,
replacement and deletion, on both stacks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from cadenza_runtime import Resources
from support import assert_eventually

Upload = Callable[..., Awaitable[httpx.Response]]
Wait = Callable[..., Awaitable[dict[str, Any]]]

REFUNDS = b"""# Refund policy

Customers get their money back within 14 days of returning an item. Refunds go to the
original payment method.

## Exceptions

Gift cards and opened software are not refundable.
"""
SHIPPING = b"Parcels ship from the Rotterdam warehouse every weekday before noon by courier."


async def _collection(client: httpx.AsyncClient, name: str = "handbook") -> None:
    resp = await client.post("/v1/collections", json={"name": name, "description": "docs"})
    assert resp.status_code == 201, resp.text


async def test_upload_ingest_and_search_with_citations(
    client: httpx.AsyncClient, upload: Upload, wait_status: Wait
) -> None:
    await _collection(client)
    first = await upload("handbook", "refunds.md", REFUNDS, "text/markdown", title="Refunds")
    second = await upload("handbook", "shipping.txt", SHIPPING, metadata='{"team": "ops"}')
    assert first.status_code == second.status_code == 202, first.text
    doc = first.json()
    assert doc["status"] == "queued"
    assert first.headers["location"].endswith(f"/v1/collections/handbook/documents/{doc['id']}")
    indexed = await wait_status("handbook", doc["id"], "indexed")
    assert indexed["chunk_count"] >= 2
    await wait_status("handbook", second.json()["id"], "indexed")

    resp = await client.post(
        "/v1/collections/handbook/search", json={"query": "can I return a gift card?", "k": 3}
    )
    assert resp.status_code == 200, resp.text
    hits = resp.json()["hits"]
    top = hits[0]
    assert top["citation"]["document_id"] == doc["id"]
    assert top["citation"]["title"] == "Refunds"
    assert top["citation"]["heading"] == "Exceptions"
    assert "Gift cards" in top["text"]
    assert hits == sorted(hits, key=lambda h: -h["score"])

    filtered = await client.post(
        "/v1/collections/handbook/search",
        json={"query": "refund", "k": 5, "filters": {"team": "ops"}, "mode": "vector"},
    )
    assert {h["citation"]["title"] for h in filtered.json()["hits"]} == {"shipping.txt"}

    listing = await client.get("/v1/collections")
    assert listing.json()["items"][0]["documents"] == 2
    docs = await client.get("/v1/collections/handbook/documents", params={"limit": 1})
    assert len(docs.json()["items"]) == 1
    nxt = await client.get(
        "/v1/collections/handbook/documents", params={"cursor": docs.json()["next_cursor"]}
    )
    assert len(nxt.json()["items"]) == 1
    assert nxt.json()["items"][0]["id"] != docs.json()["items"][0]["id"]


async def test_bad_uploads_are_refused_with_the_field_named(
    client: httpx.AsyncClient, upload: Upload
) -> None:
    await _collection(client)
    unknown = await upload("nope", "a.txt", b"hello")
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["detail"]
    exe = await upload("handbook", "tool.exe", b"MZ\x90", "application/x-msdownload")
    assert exe.status_code == 415
    assert "field file" in exe.json()["detail"]
    empty = await upload("handbook", "empty.txt", b"")
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["field"] == "file"
    big = await upload("handbook", "big.txt", b"x" * (33 * 1024))
    assert big.status_code == 413
    assert big.json()["limit_bytes"] == 32 * 1024
    fake_pdf = await upload("handbook", "scan.pdf", b"<html>not a pdf</html>", "application/pdf")
    assert fake_pdf.status_code == 422
    assert fake_pdf.json()["errors"][0]["code"] == "corrupt_pdf"
    meta = await upload("handbook", "a.txt", b"hi", metadata="[1]")
    assert meta.status_code == 422
    assert meta.json()["errors"][0]["field"] == "metadata"
    bad_name = await client.post("/v1/collections", json={"name": "Has Spaces"})
    assert bad_name.status_code == 422
    dup = await client.post("/v1/collections", json={"name": "handbook"})
    assert dup.status_code == 409
    docs = await client.get("/v1/collections/handbook/documents")
    assert docs.json()["items"] == []


async def test_a_broken_pdf_fails_and_the_next_document_still_indexes(
    client: httpx.AsyncClient, upload: Upload, wait_status: Wait
) -> None:
    await _collection(client)
    broken = await upload("handbook", "broken.pdf", b"%PDF-1.4\n garbage", "application/pdf")
    assert broken.status_code == 202
    good = await upload("handbook", "ok.txt", SHIPPING)
    failed = await wait_status("handbook", broken.json()["id"], "failed")
    assert "PDF" in failed["error"]
    await wait_status("handbook", good.json()["id"], "indexed")


async def test_same_content_is_not_ingested_twice_and_changes_replace_chunks(
    client: httpx.AsyncClient, upload: Upload, wait_status: Wait, resources: Resources
) -> None:
    await _collection(client)
    first = await upload("handbook", "refunds.md", REFUNDS, "text/markdown")
    doc_id = first.json()["id"]
    await wait_status("handbook", doc_id, "indexed")
    again = await upload("handbook", "copy.md", REFUNDS, "text/markdown")
    assert again.status_code == 200
    assert again.json()["id"] == doc_id

    new = b"Refunds are no longer offered. All sales are final since March."
    put = await client.put(
        f"/v1/collections/handbook/documents/{doc_id}",
        files={"file": ("refunds.txt", new, "text/plain")},
    )
    assert put.status_code == 202, put.text

    async def replaced() -> bool:
        body = (await client.get(f"/v1/collections/handbook/documents/{doc_id}")).json()
        assert (body["status"], body["chunk_count"]) == ("indexed", 1)
        hits = (
            await client.post(
                "/v1/collections/handbook/search", json={"query": "gift cards refundable", "k": 5}
            )
        ).json()["hits"]
        assert [h["text"] for h in hits] == [new.decode()]
        return True

    await assert_eventually(replaced, timeout=60)


async def test_delete_hides_at_once_and_removes_vectors_and_object(
    client: httpx.AsyncClient,
    upload: Upload,
    wait_status: Wait,
    resources: Resources,
    ingest: Any,
) -> None:
    await _collection(client)
    doc_id = (await upload("handbook", "ship.txt", SHIPPING)).json()["id"]
    await wait_status("handbook", doc_id, "indexed")
    object_ref = f"documents/default/handbook/{doc_id}"
    assert await resources.objects.exists(object_ref)

    resp = await client.delete(f"/v1/collections/handbook/documents/{doc_id}")
    assert resp.status_code == 204
    search = await client.post("/v1/collections/handbook/search", json={"query": "parcels"})
    assert search.json()["hits"] == []
    assert not await resources.objects.exists(object_ref)
    gone = await client.get(f"/v1/collections/handbook/documents/{doc_id}")
    assert gone.status_code == 404

    async def vectors_gone() -> bool:
        return await ingest.retriever.store.count("default", "handbook", doc_id) == 0

    await assert_eventually(vectors_gone, timeout=30)


@pytest.mark.parametrize("stack", ["unit"], indirect=True)
async def test_search_validates_its_body(client: httpx.AsyncClient) -> None:
    await _collection(client)
    resp = await client.post("/v1/collections/handbook/search", json={"query": "", "k": 500})
    assert resp.status_code == 422
    assert {e["field"] for e in resp.json()["errors"]} == {"query", "k"}
    missing = await client.post("/v1/collections/other/search", json={"query": "x"})
    assert missing.status_code == 404

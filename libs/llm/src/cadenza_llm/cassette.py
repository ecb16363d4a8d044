"""Record/replay: real responses of any provider saved to a cassette file and replayed exactly,
for deterministic regression tests. A request missing from the cassette is an error, never a
made-up answer.

A cassette is one pretty-printed JSON file (diffable, committable)::

    {"version": 1, "entries": [{"key": sha256, "occurrence": 0, "summary": "...",
                                "request": {...}, "response": {...}}, ...]}

``key`` is the SHA-256 of the canonical request (model, messages, tools, tool_choice,
response_schema, temperature, max_tokens, seed). The same request asked again gets
``occurrence`` 1, 2... only when its answer differed; replay serves occurrences in order and
repeats the last one."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from .errors import CassetteMissError
from .provider import Provider
from .types import ChatRequest, ChatResponse

log = logging.getLogger("cadenza.llm.cassette")

KEY_FIELDS = {
    "model",
    "messages",
    "tools",
    "tool_choice",
    "response_schema",
    "temperature",
    "max_tokens",
    "seed",
}
# What differs between two recordings of the same answer; ignored when deduplicating.
VOLATILE_FIELDS = {"latency_ms", "raw"}


def canonical_request(request: ChatRequest) -> dict[str, Any]:
    return request.model_dump(mode="json", include=KEY_FIELDS)


# UUIDs differ on every run (document ids in search results, run ids in tool outputs), so the
# key reads each as the same placeholder: a replayed conversation matches its recording.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def request_key(request: ChatRequest) -> str:
    """Deterministic cassette key: SHA-256 of the canonical JSON of the request, with every
    UUID in it replaced by a placeholder."""
    text = json.dumps(
        canonical_request(request), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(_UUID.sub("<uuid>", text).encode()).hexdigest()


class Cassette:
    """One cassette file. Safe to share between providers, threads and processes (writes take
    an exclusive ``flock`` and re-read the file first)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, list[dict[str, Any]]] | None = None
        self._recorded: dict[str, int] = {}  # key -> calls recorded by this process
        self._replayed: dict[str, int] = {}  # key -> calls replayed by this process

    # -- file ---------------------------------------------------------------------------

    @staticmethod
    def _parse(text: str, path: Path) -> dict[str, list[dict[str, Any]]]:
        if not text.strip():
            return {}
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError(f"{path} is not a version-1 cassette file")
        entries: dict[str, list[dict[str, Any]]] = {}
        for entry in sorted(data.get("entries", []), key=lambda e: (e["key"], e["occurrence"])):
            entries.setdefault(entry["key"], []).append(entry)
        return entries

    @staticmethod
    def _dump(entries: dict[str, list[dict[str, Any]]]) -> str:
        flat = [entry for key in sorted(entries) for entry in entries[key]]
        return json.dumps({"version": 1, "entries": flat}, indent=1, ensure_ascii=False) + "\n"

    def entries(self) -> dict[str, list[dict[str, Any]]]:
        """All recorded entries by key (read once, then cached)."""
        with self._lock:
            if self._entries is None:
                text = self.path.read_text() if self.path.is_file() else ""
                self._entries = self._parse(text, self.path)
            return self._entries

    # -- record / replay ----------------------------------------------------------------

    def record(self, request: ChatRequest, response: ChatResponse) -> None:
        key = request_key(request)
        stored = response.model_dump(mode="json")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            entries = self._parse(handle.read(), self.path)
            recorded = entries.setdefault(key, [])
            occurrence = min(self._recorded.get(key, 0), len(recorded))
            if occurrence and _same_answer(recorded[occurrence - 1]["response"], stored):
                self._recorded[key] = occurrence  # identical repeat: replay repeats the last
                return
            self._recorded[key] = occurrence + 1
            entry = {
                "key": key,
                "occurrence": occurrence,
                "summary": request.summary(),
                "request": canonical_request(request),
                "response": stored,
            }
            del recorded[occurrence:]  # re-recording replaces this and later occurrences
            recorded.append(entry)
            handle.seek(0)
            handle.truncate()
            handle.write(self._dump(entries))
            self._entries = entries
        log.debug("recorded cassette entry %s#%d in %s", key[:12], occurrence, self.path)

    def replay(self, request: ChatRequest) -> ChatResponse:
        key = request_key(request)
        recorded = self.entries().get(key)
        if not recorded:
            raise CassetteMissError(
                f"no cassette entry for key {key} in {self.path}: {request.summary()}. "
                "Record it with CADENZA_LLM_CASSETTE_MODE=record (see docs/llm.md).",
                key=key,
            )
        with self._lock:
            occurrence = self._replayed.get(key, 0)
            self._replayed[key] = occurrence + 1
        entry = recorded[min(occurrence, len(recorded) - 1)]
        return ChatResponse.model_validate(entry["response"])


def _same_answer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in VOLATILE_FIELDS}

    return strip(a) == strip(b)


def _as_cassette(cassette: Cassette | Path | str) -> Cassette:
    return cassette if isinstance(cassette, Cassette) else Cassette(Path(cassette))


class RecordingProvider:
    """Passes calls to ``inner`` and records every request -> response in the cassette."""

    def __init__(self, inner: Provider, cassette: Cassette | Path | str) -> None:
        self.inner = inner
        self.cassette = _as_cassette(cassette)

    @property
    def name(self) -> str:
        return self.inner.name

    async def chat(self, request: ChatRequest) -> ChatResponse:
        response = await self.inner.chat(request)
        self.cassette.record(request, response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class ReplayProvider:
    """Provider ``replay``: answers only from the cassette; the recorded response is returned
    as it was (its ``provider``, ``model``, usage and latency are the recorded ones)."""

    def __init__(self, cassette: Cassette | Path | str, delay_s: float = 0.0) -> None:
        self.cassette = _as_cassette(cassette)
        self.delay_s = delay_s

    @property
    def name(self) -> str:
        return "replay"

    async def chat(self, request: ChatRequest) -> ChatResponse:
        started = time.perf_counter()
        response = self.cassette.replay(request)  # a miss fails at once, before any delay
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        log.debug("replayed %s in %.2fms", request.model, (time.perf_counter() - started) * 1000)
        return response

    async def aclose(self) -> None:
        return None

"""Server-sent events of a run (``GET /v1/runs/{id}/events``): the text/event-stream format
and where to resume after a dropped connection (``Last-Event-ID``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .models import RunEvent


class SseParser:
    """Feed lines; get events. Comment lines (the server's heartbeats) are skipped."""

    def __init__(self) -> None:
        self.event = "message"
        self.id: str | None = None
        self.data: list[str] = []

    def _reset(self) -> None:
        self.event, self.id, self.data = "message", None, []

    def feed(self, line: str) -> RunEvent | None:
        if not line:
            done = self._emit()
            self._reset()
            return done
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id":
            self.id = value
        return None

    def _emit(self) -> RunEvent | None:
        if not self.data:
            return None
        text = "\n".join(self.data)
        try:
            payload: Any = json.loads(text) if text else {}
        except ValueError:
            payload = {"value": text}
        data = payload if isinstance(payload, dict) else {"value": payload}
        event_id = int(self.id) if self.id is not None and self.id.isdigit() else None
        return RunEvent(id=event_id, event=self.event, data=data)


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[RunEvent]:
    parser = SseParser()
    async for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event


def parse_sse_sync(lines: Iterator[str]) -> Iterator[RunEvent]:
    parser = SseParser()
    for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event

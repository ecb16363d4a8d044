"""``Cadenza``: the synchronous client (scripts, notebooks); the same operations as
``AsyncCadenza`` (one definition each, in ``calls``), sent with ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx
from tenacity import Retrying

from . import calls
from .aio import client_headers, default_url
from .calls import Call
from .errors import ApiError, raise_for_problem
from .events import parse_sse_sync
from .models import (
    Agent,
    ApiKey,
    ApiKeyCreated,
    AuditEntry,
    Collection,
    Document,
    Page,
    Run,
    RunEvent,
    RunStatus,
    RunSummary,
    SearchHit,
    Workflow,
    WorkflowSummary,
)
from .retry import RetryPolicy, transient

T = TypeVar("T")


class Cadenza:
    """``with Cadenza(url, api_key=…) as cadenza: run = cadenza.start_run("greet")``."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.http = httpx.Client(
            base_url=default_url(base_url),
            headers=client_headers(api_key, token),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Cadenza:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def call(self, call: Call[T]) -> T:
        if not call.retryable:
            return self._send(call)
        for attempt in Retrying(**self.retry.tenacity_kwargs()):
            with attempt:
                return self._send(call)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _send(self, call: Call[T]) -> T:
        response = self.http.request(
            call.method,
            call.path,
            params=call.params,
            json=call.json,
            content=call.content,
            files=call.files,
            data=call.data,
            headers=call.headers,
        )
        raise_for_problem(response)
        return call.parse(response.json() if response.content else None)

    def paginate(self, page: Callable[[str | None], Call[Page[T]]]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            result = self.call(page(cursor))
            yield from result.items
            if not result.next_cursor:
                return
            cursor = result.next_cursor

    def register_workflow(self, spec: Mapping[str, Any] | str) -> Workflow:
        return self.call(calls.register_workflow(spec))

    def get_workflow(self, name: str, version: int | None = None) -> Workflow:
        return self.call(calls.get_workflow(name, version))

    def iter_workflows(self, *, page_size: int = 100) -> Iterator[WorkflowSummary]:
        return self.paginate(lambda c: calls.list_workflows(limit=page_size, cursor=c))

    def register_agent(self, spec: Mapping[str, Any] | str) -> Agent:
        return self.call(calls.register_agent(spec))

    def get_agent(self, name: str, version: int | None = None) -> Agent:
        return self.call(calls.get_agent(name, version))

    def start_run(
        self,
        workflow: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        *,
        spec: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        return self.call(
            calls.start_run(workflow, inputs, spec=spec, idempotency_key=idempotency_key)
        )

    def get_run(self, run_id: str) -> Run:
        return self.call(calls.get_run(run_id))

    def get_run_status(self, run_id: str) -> RunStatus:
        return self.call(calls.get_run_status(run_id))

    def list_runs(self, **filters: Any) -> Page[RunSummary]:
        return self.call(calls.list_runs(**filters))

    def iter_runs(
        self, *, status: str | None = None, workflow: str | None = None, page_size: int = 100
    ) -> Iterator[RunSummary]:
        return self.paginate(
            lambda c: calls.list_runs(status=status, workflow=workflow, limit=page_size, cursor=c)
        )

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        return self.call(calls.cancel_run(run_id))

    def wait_for_run(self, run_id: str, *, poll_s: float = 0.5) -> Run:
        while True:
            run = self.get_run(run_id)
            if run.terminal:
                return run
            time.sleep(poll_s)

    def events(self, run_id: str, *, after: int = 0, reconnects: int = 20) -> Iterator[RunEvent]:
        last, failures = after, 0
        while True:
            headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last)}
            path = f"/v1/runs/{calls.quote(run_id, safe='')}/events"
            try:
                with self.http.stream(
                    "GET", path, headers=headers, timeout=httpx.Timeout(30, read=None)
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise_for_problem(response)
                    for event in parse_sse_sync(response.iter_lines()):
                        failures = 0
                        if event.id is not None:
                            last = event.id
                        yield event
                        if event.terminal:
                            return
            except (httpx.TransportError, ApiError) as exc:
                if not transient(exc):
                    raise
                failures += 1
                if failures > reconnects:
                    raise
                time.sleep(min(0.2 * 2**failures, 5.0))

    def create_collection(self, name: str, description: str | None = None) -> Collection:
        return self.call(calls.create_collection(name, description))

    def upload_document(
        self,
        collection: str,
        filename: str,
        content: bytes,
        content_type: str = "text/plain",
        *,
        title: str | None = None,
    ) -> Document:
        return self.call(calls.upload_document(collection, filename, content, content_type, title))

    def search(self, collection: str, query: str, *, k: int | None = None) -> list[SearchHit]:
        return self.call(calls.search(collection, query, k=k))

    def create_api_key(
        self, name: str, scopes: list[str], *, expires_in_s: int | None = None
    ) -> ApiKeyCreated:
        return self.call(calls.create_api_key(name, scopes, expires_in_s=expires_in_s))

    def list_api_keys(self) -> list[ApiKey]:
        return self.call(calls.list_api_keys()).items

    def rotate_api_key(self, key_id: str) -> ApiKeyCreated:
        return self.call(calls.rotate_api_key(key_id))

    def revoke_api_key(self, key_id: str) -> None:
        self.call(calls.revoke_api_key(key_id))

    def iter_audit(
        self, *, action: str | None = None, page_size: int = 100
    ) -> Iterator[AuditEntry]:
        return self.paginate(lambda c: calls.list_audit(action=action, limit=page_size, cursor=c))

"""``AsyncCadenza``: the asynchronous client."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying

from . import calls
from .calls import Call
from .errors import ApiError, raise_for_problem
from .events import parse_sse
from .models import (
    Agent,
    AgentSummary,
    ApiKey,
    ApiKeyCreated,
    Approval,
    AuditEntry,
    Collection,
    DatasetLoaded,
    DeadLetter,
    Document,
    Evaluation,
    EventsAccepted,
    Page,
    RecordedCall,
    Run,
    RunDiff,
    RunEvent,
    RunStatus,
    RunSummary,
    Schedule,
    SearchHit,
    Trigger,
    Upload,
    Workflow,
    WorkflowSummary,
)
from .retry import RetryPolicy, transient

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8080"


def client_headers(api_key: str | None, token: str | None) -> dict[str, str]:
    """The bearer credential: an API key (``cdz_…``) or an OIDC access token; by default
    ``$CADENZA_API_KEY``. None, or ``api_key=""``: only a dev-mode gateway answers."""
    if api_key is None and token is None:
        credential = os.environ.get("CADENZA_API_KEY", "")
    else:
        credential = api_key or token or ""
    headers = {"User-Agent": "cadenza-client/0.1"}
    if credential:
        headers["Authorization"] = f"Bearer {credential}"
    return headers


def default_url(base_url: str | None) -> str:
    return (base_url or os.environ.get("CADENZA_URL") or DEFAULT_URL).rstrip("/")


class AsyncCadenza:
    """``async with AsyncCadenza(url, api_key=…) as cadenza: run = await cadenza.start_run(…)``.

    ``http`` is the underlying ``httpx.AsyncClient`` (base URL and credential set) for
    operations this client does not wrap yet."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.http = httpx.AsyncClient(
            base_url=default_url(base_url),
            headers=client_headers(api_key, token),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncCadenza:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- the engine ----------------------------------------------------------------------
    async def call(self, call: Call[T]) -> T:
        """Send one operation; retried (``retry``) when it is safe to send again."""
        if not call.retryable:
            return await self._send(call)
        async for attempt in AsyncRetrying(**self.retry.tenacity_kwargs()):
            with attempt:
                return await self._send(call)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _send(self, call: Call[T]) -> T:
        response = await self.http.request(
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
        return call.read(response.status_code, response.json() if response.content else None)

    async def paginate(self, page: Callable[[str | None], Call[Page[T]]]) -> AsyncIterator[T]:
        """Every item of a listing, page after page (``page(cursor)`` builds one request)."""
        cursor: str | None = None
        while True:
            result = await self.call(page(cursor))
            for item in result.items:
                yield item
            if not result.next_cursor:
                return
            cursor = result.next_cursor

    # -- workflows and agents ------------------------------------------------------------
    async def register_workflow(
        self, spec: Mapping[str, Any] | str | bytes, *, content_type: str = calls.YAML
    ) -> Workflow:
        """A mapping (sent as JSON) or document text (YAML, or ``content_type``)."""
        return await self.call(calls.register_workflow(spec, content_type))

    async def get_workflow(self, name: str, version: int | None = None) -> Workflow:
        return await self.call(calls.get_workflow(name, version))

    def iter_workflows(self, *, page_size: int = 100) -> AsyncIterator[WorkflowSummary]:
        return self.paginate(lambda c: calls.list_workflows(limit=page_size, cursor=c))

    async def register_agent(
        self, spec: Mapping[str, Any] | str | bytes, *, content_type: str = calls.YAML
    ) -> Agent:
        """A mapping (sent as JSON) or document text (YAML, or ``content_type``)."""
        return await self.call(calls.register_agent(spec, content_type))

    async def get_agent(self, name: str, version: int | None = None) -> Agent:
        return await self.call(calls.get_agent(name, version))

    def iter_agents(self, *, page_size: int = 100) -> AsyncIterator[AgentSummary]:
        return self.paginate(lambda c: calls.list_agents(limit=page_size, cursor=c))

    # -- runs ----------------------------------------------------------------------------
    async def start_run(
        self,
        workflow: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        *,
        spec: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        return await self.call(
            calls.start_run(workflow, inputs, spec=spec, idempotency_key=idempotency_key)
        )

    async def get_run(self, run_id: str) -> Run:
        return await self.call(calls.get_run(run_id))

    async def get_run_status(self, run_id: str) -> RunStatus:
        return await self.call(calls.get_run_status(run_id))

    async def list_runs(self, **filters: Any) -> Page[RunSummary]:
        return await self.call(calls.list_runs(**filters))

    def iter_runs(
        self, *, status: str | None = None, workflow: str | None = None, page_size: int = 100
    ) -> AsyncIterator[RunSummary]:
        return self.paginate(
            lambda c: calls.list_runs(status=status, workflow=workflow, limit=page_size, cursor=c)
        )

    async def cancel_run(self, run_id: str, *, reason: str | None = None) -> Run:
        """Request the cancel (a command the orchestrator carries out); ``wait_for_run``
        to see it done."""
        return await self.call(calls.cancel_run(run_id, reason))

    async def resume_run(
        self,
        run_id: str,
        *,
        budget: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> Run:
        """Resume a run a budget paused (a command; ``wait_for_run`` to see it go on)."""
        return await self.call(calls.resume_run(run_id, budget=budget, reason=reason))

    async def rerun_run(
        self,
        run_id: str,
        *,
        from_tasks: list[str] | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> Run:
        return await self.call(calls.rerun_run(run_id, from_tasks=from_tasks, inputs=inputs))

    async def fork_run(
        self,
        run_id: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        model: str | None = None,
        tasks: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Run:
        return await self.call(calls.fork_run(run_id, inputs=inputs, model=model, tasks=tasks))

    async def diff_runs(self, run_id: str, other_id: str) -> RunDiff:
        return await self.call(calls.diff_runs(run_id, other_id))

    def iter_calls(self, run_id: str, *, page_size: int = 100) -> AsyncIterator[RecordedCall]:
        """Every LLM and tool call of the run, in order."""
        return self.paginate(lambda c: calls.list_calls(run_id, limit=page_size, cursor=c))

    async def run_timeline(self, run_id: str) -> dict[str, Any]:
        return await self.call(calls.run_timeline(run_id))

    async def wait_for_run(self, run_id: str, *, poll_s: float = 0.5) -> Run:
        """Poll until the run is finished (succeeded, failed or cancelled)."""
        while True:
            run = await self.get_run(run_id)
            if run.terminal:
                return run
            await asyncio.sleep(poll_s)

    async def events(
        self, run_id: str, *, after: int = 0, reconnects: int = 20
    ) -> AsyncIterator[RunEvent]:
        """The run's events after ``after`` until its terminal one; a dropped connection
        resumes after the last event seen (``Last-Event-ID``): nothing twice, nothing lost."""
        last, failures = after, 0
        while True:
            headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last)}
            path = f"/v1/runs/{calls.quote(run_id, safe='')}/events"
            try:
                async with self.http.stream(
                    "GET", path, headers=headers, timeout=httpx.Timeout(30, read=None)
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise_for_problem(response)
                    async for event in parse_sse(response.aiter_lines()):
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
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))

    # -- documents -----------------------------------------------------------------------
    async def create_collection(self, name: str, description: str | None = None) -> Collection:
        return await self.call(calls.create_collection(name, description))

    async def list_collections(self) -> Page[Collection]:
        return await self.call(calls.list_collections())

    async def upload_document(
        self,
        collection: str,
        filename: str,
        content: bytes,
        content_type: str = "text/plain",
        *,
        title: str | None = None,
    ) -> Upload:
        return await self.call(
            calls.upload_document(collection, filename, content, content_type, title)
        )

    async def get_document(self, collection: str, document_id: str) -> Document:
        return await self.call(calls.get_document(collection, document_id))

    async def search(self, collection: str, query: str, *, k: int | None = None) -> list[SearchHit]:
        return await self.call(calls.search(collection, query, k=k))

    async def replace_document(
        self,
        collection: str,
        document_id: str,
        filename: str,
        content: bytes,
        content_type: str = "text/plain",
    ) -> Upload:
        return await self.call(
            calls.replace_document(collection, document_id, filename, content, content_type)
        )

    def iter_documents(self, collection: str, *, page_size: int = 100) -> AsyncIterator[Document]:
        return self.paginate(lambda c: calls.list_documents(collection, limit=page_size, cursor=c))

    async def load_dataset(
        self, dataset: str, records: str | bytes, *, content_type: str = calls.YAML
    ) -> DatasetLoaded:
        return await self.call(calls.load_dataset(dataset, records, content_type))

    async def store_evaluation(
        self,
        suite: str,
        results: list[Mapping[str, Any]],
        *,
        regressions: list[Mapping[str, Any]] | None = None,
        agent: str | None = None,
        against: str | None = None,
    ) -> Evaluation:
        return await self.call(
            calls.store_evaluation(
                suite, results, regressions=regressions, agent=agent, against=against
            )
        )

    # -- triggers, schedules and events --------------------------------------------------
    async def register_trigger(self, spec: Mapping[str, Any]) -> Trigger:
        return await self.call(calls.register_trigger(spec))

    async def list_triggers(self) -> Page[Trigger]:
        return await self.call(calls.list_triggers())

    async def get_trigger(self, name: str) -> Trigger:
        return await self.call(calls.get_trigger(name))

    async def set_trigger_enabled(self, name: str, enabled: bool) -> Trigger:
        return await self.call(calls.set_trigger_enabled(name, enabled))

    async def delete_trigger(self, name: str) -> None:
        await self.call(calls.delete_trigger(name))

    async def create_schedule(self, spec: Mapping[str, Any]) -> Schedule:
        return await self.call(calls.create_schedule(spec))

    async def list_schedules(self) -> Page[Schedule]:
        return await self.call(calls.list_schedules())

    async def get_schedule(self, name: str) -> Schedule:
        return await self.call(calls.get_schedule(name))

    async def set_schedule_paused(self, name: str, paused: bool) -> Schedule:
        return await self.call(calls.set_schedule_paused(name, paused))

    async def delete_schedule(self, name: str) -> None:
        await self.call(calls.delete_schedule(name))

    async def send_event(self, event: Mapping[str, Any]) -> EventsAccepted:
        return await self.call(calls.send_event(event))

    # -- held tool calls and dead letters ------------------------------------------------
    async def list_approvals(self, **filters: Any) -> Page[Approval]:
        """Filters: ``status``, ``run_id``, ``kind``, ``limit``, ``cursor``."""
        return await self.call(calls.list_approvals(**filters))

    async def get_approval(self, approval_id: str) -> Approval:
        return await self.call(calls.get_approval(approval_id))

    async def answer_approval(
        self, approval_id: str, *, approve: bool, comment: str | None = None
    ) -> Approval:
        return await self.call(calls.answer_approval(approval_id, approve, comment))

    async def resolve_approval(
        self, approval_id: str, outcome: str, *, output: Any = None, comment: str | None = None
    ) -> Approval:
        return await self.call(calls.resolve_approval(approval_id, outcome, output, comment))

    async def list_dead_letters(self, **filters: Any) -> Page[DeadLetter]:
        """Filters: ``status``, ``topic``, ``run_id``, ``limit``, ``cursor``."""
        return await self.call(calls.list_dead_letters(**filters))

    async def settle_dead_letter(self, letter_id: int, *, replay: bool) -> DeadLetter:
        return await self.call(calls.settle_dead_letter(letter_id, replay))

    # -- keys and audit ------------------------------------------------------------------
    async def create_api_key(
        self, name: str, scopes: list[str], *, expires_in_s: int | None = None
    ) -> ApiKeyCreated:
        return await self.call(calls.create_api_key(name, scopes, expires_in_s=expires_in_s))

    async def list_api_keys(self) -> list[ApiKey]:
        return (await self.call(calls.list_api_keys())).items

    async def rotate_api_key(self, key_id: str) -> ApiKeyCreated:
        return await self.call(calls.rotate_api_key(key_id))

    async def revoke_api_key(self, key_id: str) -> None:
        await self.call(calls.revoke_api_key(key_id))

    def iter_audit(
        self, *, action: str | None = None, page_size: int = 100
    ) -> AsyncIterator[AuditEntry]:
        return self.paginate(lambda c: calls.list_audit(action=action, limit=page_size, cursor=c))

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
        return call.read(response.status_code, response.json() if response.content else None)

    def paginate(self, page: Callable[[str | None], Call[Page[T]]]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            result = self.call(page(cursor))
            yield from result.items
            if not result.next_cursor:
                return
            cursor = result.next_cursor

    def register_workflow(
        self, spec: Mapping[str, Any] | str | bytes, *, content_type: str = calls.YAML
    ) -> Workflow:
        """A mapping (sent as JSON) or document text (YAML, or ``content_type``)."""
        return self.call(calls.register_workflow(spec, content_type))

    def get_workflow(self, name: str, version: int | None = None) -> Workflow:
        return self.call(calls.get_workflow(name, version))

    def iter_workflows(self, *, page_size: int = 100) -> Iterator[WorkflowSummary]:
        return self.paginate(lambda c: calls.list_workflows(limit=page_size, cursor=c))

    def register_agent(
        self, spec: Mapping[str, Any] | str | bytes, *, content_type: str = calls.YAML
    ) -> Agent:
        """A mapping (sent as JSON) or document text (YAML, or ``content_type``)."""
        return self.call(calls.register_agent(spec, content_type))

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

    def cancel_run(self, run_id: str, *, reason: str | None = None) -> Run:
        """Request the cancel (a command the orchestrator carries out); ``wait_for_run``
        to see it done."""
        return self.call(calls.cancel_run(run_id, reason))

    def resume_run(
        self,
        run_id: str,
        *,
        budget: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> Run:
        """Resume a run a budget paused (a command; ``wait_for_run`` to see it go on)."""
        return self.call(calls.resume_run(run_id, budget=budget, reason=reason))

    def rerun_run(
        self,
        run_id: str,
        *,
        from_tasks: list[str] | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> Run:
        return self.call(calls.rerun_run(run_id, from_tasks=from_tasks, inputs=inputs))

    def fork_run(
        self,
        run_id: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        model: str | None = None,
        tasks: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Run:
        return self.call(calls.fork_run(run_id, inputs=inputs, model=model, tasks=tasks))

    def diff_runs(self, run_id: str, other_id: str) -> RunDiff:
        return self.call(calls.diff_runs(run_id, other_id))

    def iter_calls(self, run_id: str, *, page_size: int = 100) -> Iterator[RecordedCall]:
        """Every LLM and tool call of the run, in order."""
        return self.paginate(lambda c: calls.list_calls(run_id, limit=page_size, cursor=c))

    def run_timeline(self, run_id: str) -> dict[str, Any]:
        return self.call(calls.run_timeline(run_id))

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
    ) -> Upload:
        return self.call(calls.upload_document(collection, filename, content, content_type, title))

    def search(self, collection: str, query: str, *, k: int | None = None) -> list[SearchHit]:
        return self.call(calls.search(collection, query, k=k))

    def replace_document(
        self,
        collection: str,
        document_id: str,
        filename: str,
        content: bytes,
        content_type: str = "text/plain",
    ) -> Upload:
        return self.call(
            calls.replace_document(collection, document_id, filename, content, content_type)
        )

    def iter_documents(self, collection: str, *, page_size: int = 100) -> Iterator[Document]:
        return self.paginate(lambda c: calls.list_documents(collection, limit=page_size, cursor=c))

    def load_dataset(
        self, dataset: str, records: str | bytes, *, content_type: str = calls.YAML
    ) -> DatasetLoaded:
        return self.call(calls.load_dataset(dataset, records, content_type))

    def store_evaluation(
        self,
        suite: str,
        results: list[Mapping[str, Any]],
        *,
        regressions: list[Mapping[str, Any]] | None = None,
        agent: str | None = None,
        against: str | None = None,
    ) -> Evaluation:
        return self.call(
            calls.store_evaluation(
                suite, results, regressions=regressions, agent=agent, against=against
            )
        )

    # -- triggers, schedules and events --------------------------------------------------
    def register_trigger(self, spec: Mapping[str, Any]) -> Trigger:
        return self.call(calls.register_trigger(spec))

    def list_triggers(self) -> Page[Trigger]:
        return self.call(calls.list_triggers())

    def get_trigger(self, name: str) -> Trigger:
        return self.call(calls.get_trigger(name))

    def set_trigger_enabled(self, name: str, enabled: bool) -> Trigger:
        return self.call(calls.set_trigger_enabled(name, enabled))

    def delete_trigger(self, name: str) -> None:
        self.call(calls.delete_trigger(name))

    def create_schedule(self, spec: Mapping[str, Any]) -> Schedule:
        return self.call(calls.create_schedule(spec))

    def list_schedules(self) -> Page[Schedule]:
        return self.call(calls.list_schedules())

    def get_schedule(self, name: str) -> Schedule:
        return self.call(calls.get_schedule(name))

    def set_schedule_paused(self, name: str, paused: bool) -> Schedule:
        return self.call(calls.set_schedule_paused(name, paused))

    def delete_schedule(self, name: str) -> None:
        self.call(calls.delete_schedule(name))

    def send_event(self, event: Mapping[str, Any]) -> EventsAccepted:
        return self.call(calls.send_event(event))

    # -- held tool calls and dead letters ------------------------------------------------
    def list_approvals(self, **filters: Any) -> Page[Approval]:
        """Filters: ``status``, ``run_id``, ``kind``, ``limit``, ``cursor``."""
        return self.call(calls.list_approvals(**filters))

    def get_approval(self, approval_id: str) -> Approval:
        return self.call(calls.get_approval(approval_id))

    def answer_approval(
        self, approval_id: str, *, approve: bool, comment: str | None = None
    ) -> Approval:
        return self.call(calls.answer_approval(approval_id, approve, comment))

    def resolve_approval(
        self, approval_id: str, outcome: str, *, output: Any = None, comment: str | None = None
    ) -> Approval:
        return self.call(calls.resolve_approval(approval_id, outcome, output, comment))

    def list_dead_letters(self, **filters: Any) -> Page[DeadLetter]:
        """Filters: ``status``, ``topic``, ``run_id``, ``limit``, ``cursor``."""
        return self.call(calls.list_dead_letters(**filters))

    def settle_dead_letter(self, letter_id: int, *, replay: bool) -> DeadLetter:
        return self.call(calls.settle_dead_letter(letter_id, replay))

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

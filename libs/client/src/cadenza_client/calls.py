"""Each API operation once, as data (method, path, body, how to read the answer), so the
async and the sync client share it and differ only in how they send it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote  # re-exported for the clients

from pydantic import TypeAdapter

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
    RunStatus,
    RunSummary,
    Schedule,
    SearchHit,
    Trigger,
    Upload,
    Workflow,
    WorkflowSummary,
)

T = TypeVar("T")
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
YAML = "application/yaml"


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: str | bytes | None = None
    files: Any = None
    data: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # For the few answers whose status code says something the body does not (an upload:
    # 202 new content, 200 the same content already stored): read with the status.
    parse_with_status: Callable[[int, Any], T] | None = None

    def read(self, status: int, body: Any) -> T:
        if self.parse_with_status is not None:
            return self.parse_with_status(status, body)
        return self.parse(body)

    @property
    def retryable(self) -> bool:
        """Safe to send again: idempotent by method, or a POST made so by its key."""
        return self.method in IDEMPOTENT or "Idempotency-Key" in self.headers


def _seg(value: str | int) -> str:
    return quote(str(value), safe="")


def _model(cls: type[T]) -> Callable[[Any], T]:
    adapter = TypeAdapter(cls)
    return adapter.validate_python


def _none(_body: Any) -> None:
    return None


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# -- workflows ---------------------------------------------------------------------------
def _spec_call(
    path: str, parse: Callable[[Any], T], spec: Mapping[str, Any] | str | bytes, content_type: str
) -> Call[T]:
    """A spec as a mapping (sent as JSON) or as document text sent as ``content_type``
    (YAML by default; a JSON file's text as application/json)."""
    if isinstance(spec, str | bytes):
        return Call("POST", path, parse, content=spec, headers={"Content-Type": content_type})
    return Call("POST", path, parse, json=dict(spec))


def register_workflow(
    spec: Mapping[str, Any] | str | bytes, content_type: str = YAML
) -> Call[Workflow]:
    return _spec_call("/v1/workflows", _model(Workflow), spec, content_type)


def get_workflow(name: str, version: int | None = None) -> Call[Workflow]:
    path = f"/v1/workflows/{_seg(name)}"
    if version is not None:
        path += f"/versions/{int(version)}"
    return Call("GET", path, _model(Workflow))


def list_workflows(
    *, limit: int | None = None, cursor: str | None = None
) -> Call[Page[WorkflowSummary]]:
    params = _params(limit=limit, cursor=cursor)
    return Call("GET", "/v1/workflows", _model(Page[WorkflowSummary]), params=params)


# -- agents ------------------------------------------------------------------------------
def register_agent(spec: Mapping[str, Any] | str | bytes, content_type: str = YAML) -> Call[Agent]:
    return _spec_call("/v1/agents", _model(Agent), spec, content_type)


def get_agent(name: str, version: int | None = None) -> Call[Agent]:
    path = f"/v1/agents/{_seg(name)}"
    if version is not None:
        path += f"/versions/{int(version)}"
    return Call("GET", path, _model(Agent))


def list_agents(*, limit: int | None = None, cursor: str | None = None) -> Call[Page[AgentSummary]]:
    params = _params(limit=limit, cursor=cursor)
    return Call("GET", "/v1/agents", _model(Page[AgentSummary]), params=params)


# -- runs --------------------------------------------------------------------------------
def start_run(
    workflow: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    *,
    spec: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Call[Run]:
    """By registered name (``name`` or ``name@version``) or with an inline ``spec``. With an
    ``idempotency_key`` the same key gives the same run, so the call is retried safely."""
    body: dict[str, Any] = {"inputs": dict(inputs or {})}
    if spec is not None:
        # Not a mapping: sent as it is, for the gateway's problem to name.
        body["spec"] = dict(spec) if isinstance(spec, Mapping) else spec
    else:
        body["workflow"] = workflow
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return Call("POST", "/v1/runs", _model(Run), json=body, headers=headers)


def get_run(run_id: str) -> Call[Run]:
    return Call("GET", f"/v1/runs/{_seg(run_id)}", _model(Run))


def get_run_status(run_id: str) -> Call[RunStatus]:
    return Call("GET", f"/v1/runs/{_seg(run_id)}/status", _model(RunStatus))


def list_runs(
    *,
    status: str | None = None,
    workflow: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[Page[RunSummary]]:
    params = _params(status=status, workflow=workflow, limit=limit, cursor=cursor)
    return Call("GET", "/v1/runs", _model(Page[RunSummary]), params=params)


def cancel_run(run_id: str, reason: str | None = None) -> Call[Run]:
    """A command: the orchestrator cancels the run later; the answer is the run as it is."""
    body = {"reason": reason} if reason else None
    return Call("POST", f"/v1/runs/{_seg(run_id)}/cancel", _model(Run), json=body)


def resume_run(
    run_id: str, *, budget: Mapping[str, Any] | None = None, reason: str | None = None
) -> Call[Run]:
    """A command: the orchestrator resumes a run a budget paused (raising the run's own
    limit to ``budget`` first, if given); the answer is the run as it is."""
    body: dict[str, Any] = {}
    if budget:
        body["budget"] = dict(budget)
    if reason:
        body["reason"] = reason
    return Call("POST", f"/v1/runs/{_seg(run_id)}/resume", _model(Run), json=body or None)


def run_timeline(run_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/runs/{_seg(run_id)}/timeline", _model(dict[str, Any]))


# -- replay (docs/replay.md) -------------------------------------------------------------
def rerun_run(
    run_id: str, *, from_tasks: list[str] | None = None, inputs: Mapping[str, Any] | None = None
) -> Call[Run]:
    """A new run of a finished one: ``from_tasks`` (default: the failed ones) and what is
    downstream of them run again, the rest reuse the parent's recorded outputs."""
    body: dict[str, Any] = {"inputs": dict(inputs or {})}
    if from_tasks:
        body["from"] = list(from_tasks)
    return Call("POST", f"/v1/runs/{_seg(run_id)}/rerun", _model(Run), json=body)


def fork_run(
    run_id: str,
    *,
    inputs: Mapping[str, Any] | None = None,
    model: str | None = None,
    tasks: Mapping[str, Mapping[str, Any]] | None = None,
) -> Call[Run]:
    """A new run with overrides: ``model`` for every agent task, per task ``tasks[id]`` =
    ``{model, system_prompt, agent_version, output}``."""
    body: dict[str, Any] = {
        "inputs": dict(inputs or {}),
        "tasks": {k: dict(v) for k, v in (tasks or {}).items()},
    }
    if model:
        body["model"] = model
    return Call("POST", f"/v1/runs/{_seg(run_id)}/fork", _model(Run), json=body)


def diff_runs(run_id: str, other_id: str) -> Call[RunDiff]:
    return Call("GET", f"/v1/runs/{_seg(run_id)}/diff/{_seg(other_id)}", _model(RunDiff))


def list_calls(
    run_id: str, *, limit: int | None = None, cursor: str | None = None
) -> Call[Page[RecordedCall]]:
    params = _params(limit=limit, cursor=cursor)
    path = f"/v1/runs/{_seg(run_id)}/calls"
    return Call("GET", path, _model(Page[RecordedCall]), params=params)


# -- datasets and evaluations ------------------------------------------------------------
def load_dataset(
    dataset: str, records: str | bytes, content_type: str = YAML
) -> Call[DatasetLoaded]:
    """``PUT`` a records document (``{records: [{key, data}]}``, YAML or JSON text)."""
    path = f"/v1/datasets/{_seg(dataset)}/records"
    headers = {"Content-Type": content_type}
    return Call("PUT", path, _model(DatasetLoaded), content=records, headers=headers)


def store_evaluation(
    suite: str,
    results: list[Mapping[str, Any]],
    *,
    regressions: list[Mapping[str, Any]] | None = None,
    agent: str | None = None,
    against: str | None = None,
) -> Call[Evaluation]:
    body = {
        "suite": suite,
        "agent": agent,
        "against": against,
        "results": [dict(r) for r in results],
        "regressions": [dict(r) for r in regressions or []],
    }
    return Call("POST", "/v1/evaluations", _model(Evaluation), json=body)


# -- documents ---------------------------------------------------------------------------
def create_collection(name: str, description: str | None = None) -> Call[Collection]:
    body = _params(name=name, description=description)
    return Call("POST", "/v1/collections", _model(Collection), json=body)


def list_collections() -> Call[Page[Collection]]:
    return Call("GET", "/v1/collections", _model(Page[Collection]))


def upload_document(
    collection: str, filename: str, content: bytes, content_type: str, title: str | None = None
) -> Call[Upload]:
    files = {"file": (filename, content, content_type)}
    data = _params(title=title)
    path = f"/v1/collections/{_seg(collection)}/documents"
    return Call("POST", path, _model(Upload), files=files, data=data, parse_with_status=_uploaded)


def _uploaded(status: int, body: Any) -> Upload:
    upload = Upload.model_validate(body)
    upload.accepted = status == 202
    return upload


def replace_document(
    collection: str, document_id: str, filename: str, content: bytes, content_type: str
) -> Call[Upload]:
    """New content for a document (same id, re-indexed); PUT, so retried safely."""
    files = {"file": (filename, content, content_type)}
    path = f"/v1/collections/{_seg(collection)}/documents/{_seg(document_id)}"
    return Call("PUT", path, _model(Upload), files=files, parse_with_status=_uploaded)


def list_documents(
    collection: str, *, limit: int | None = None, cursor: str | None = None
) -> Call[Page[Document]]:
    params = _params(limit=limit, cursor=cursor)
    path = f"/v1/collections/{_seg(collection)}/documents"
    return Call("GET", path, _model(Page[Document]), params=params)


def get_document(collection: str, document_id: str) -> Call[Document]:
    path = f"/v1/collections/{_seg(collection)}/documents/{_seg(document_id)}"
    return Call("GET", path, _model(Document))


def search(collection: str, query: str, *, k: int | None = None) -> Call[list[SearchHit]]:
    body = _params(query=query, k=k)

    def hits(answer: Any) -> list[SearchHit]:
        return [SearchHit.model_validate(h) for h in answer.get("hits", [])]

    return Call("POST", f"/v1/collections/{_seg(collection)}/search", hits, json=body)


# -- keys and audit ----------------------------------------------------------------------
def create_api_key(
    name: str, scopes: list[str], *, expires_in_s: int | None = None
) -> Call[ApiKeyCreated]:
    body = _params(name=name, scopes=scopes, expires_in_s=expires_in_s)
    return Call("POST", "/v1/api-keys", _model(ApiKeyCreated), json=body)


def list_api_keys() -> Call[Page[ApiKey]]:
    return Call("GET", "/v1/api-keys", _model(Page[ApiKey]))


def rotate_api_key(key_id: str) -> Call[ApiKeyCreated]:
    return Call("POST", f"/v1/api-keys/{_seg(key_id)}/rotate", _model(ApiKeyCreated))


def revoke_api_key(key_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/api-keys/{_seg(key_id)}", _none)


def list_audit(
    *, action: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Call[Page[AuditEntry]]:
    params = _params(action=action, limit=limit, cursor=cursor)
    return Call("GET", "/v1/audit", _model(Page[AuditEntry]), params=params)


# -- triggers, schedules and events (docs/triggers.md) -----------------------------------
def register_trigger(spec: Mapping[str, Any]) -> Call[Trigger]:
    return Call("POST", "/v1/triggers", _model(Trigger), json=dict(spec))


def list_triggers() -> Call[Page[Trigger]]:
    return Call("GET", "/v1/triggers", _model(Page[Trigger]))


def get_trigger(name: str) -> Call[Trigger]:
    return Call("GET", f"/v1/triggers/{_seg(name)}", _model(Trigger))


def set_trigger_enabled(name: str, enabled: bool) -> Call[Trigger]:
    """A new version with ``enabled`` changed (none when it already is)."""
    action = "enable" if enabled else "disable"
    return Call("POST", f"/v1/triggers/{_seg(name)}/{action}", _model(Trigger))


def delete_trigger(name: str) -> Call[None]:
    return Call("DELETE", f"/v1/triggers/{_seg(name)}", _none)


def create_schedule(spec: Mapping[str, Any]) -> Call[Schedule]:
    return Call("POST", "/v1/schedules", _model(Schedule), json=dict(spec))


def list_schedules() -> Call[Page[Schedule]]:
    return Call("GET", "/v1/schedules", _model(Page[Schedule]))


def get_schedule(name: str) -> Call[Schedule]:
    return Call("GET", f"/v1/schedules/{_seg(name)}", _model(Schedule))


def set_schedule_paused(name: str, paused: bool) -> Call[Schedule]:
    action = "pause" if paused else "resume"
    return Call("POST", f"/v1/schedules/{_seg(name)}/{action}", _model(Schedule))


def delete_schedule(name: str) -> Call[None]:
    return Call("DELETE", f"/v1/schedules/{_seg(name)}", _none)


def send_event(event: Mapping[str, Any]) -> Call[EventsAccepted]:
    """One CloudEvent in structured mode; a resent ``id`` is a duplicate (no new run)."""
    headers = {"Content-Type": "application/cloudevents+json"}
    content = json.dumps(dict(event)).encode()
    return Call("POST", "/v1/events", _model(EventsAccepted), content=content, headers=headers)


# -- held tool calls and dead letters (docs/guardrails.md) -------------------------------
def list_approvals(
    *,
    status: str | None = None,
    run_id: str | None = None,
    kind: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[Page[Approval]]:
    params = _params(status=status, run_id=run_id, kind=kind, limit=limit, cursor=cursor)
    return Call("GET", "/v1/approvals", _model(Page[Approval]), params=params)


def get_approval(approval_id: str) -> Call[Approval]:
    return Call("GET", f"/v1/approvals/{_seg(approval_id)}", _model(Approval))


def answer_approval(approval_id: str, approve: bool, comment: str | None = None) -> Call[Approval]:
    """Approve (the task resumes and makes the call, once) or reject (the agent is told)."""
    action = "approve" if approve else "reject"
    path = f"/v1/approvals/{_seg(approval_id)}/{action}"
    return Call("POST", path, _model(Approval), json={"comment": comment})


def resolve_approval(
    approval_id: str, outcome: str, output: Any = None, comment: str | None = None
) -> Call[Approval]:
    """An effect in doubt: ``done`` (it happened; ``output`` is its result) or ``retry``."""
    body = {"outcome": outcome, "output": output, "comment": comment}
    path = f"/v1/approvals/{_seg(approval_id)}/resolve"
    return Call("POST", path, _model(Approval), json=body)


def list_dead_letters(
    *,
    status: str | None = None,
    topic: str | None = None,
    run_id: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[Page[DeadLetter]]:
    params = _params(status=status, topic=topic, run_id=run_id, limit=limit, cursor=cursor)
    return Call("GET", "/v1/dead-letters", _model(Page[DeadLetter]), params=params)


def settle_dead_letter(letter_id: int, replay: bool) -> Call[DeadLetter]:
    """Replay (publish the original record again) or discard it for good."""
    action = "replay" if replay else "discard"
    return Call("POST", f"/v1/dead-letters/{int(letter_id)}/{action}", _model(DeadLetter))

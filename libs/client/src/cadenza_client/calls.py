"""Each API operation once, as data (method, path, body, how to read the answer), so the
async and the sync client share it and differ only in how they send it."""

from __future__ import annotations

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
    AuditEntry,
    Collection,
    Document,
    Page,
    Run,
    RunStatus,
    RunSummary,
    SearchHit,
    Workflow,
    WorkflowSummary,
)

T = TypeVar("T")
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


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
def register_workflow(spec: Mapping[str, Any] | str) -> Call[Workflow]:
    """A spec as a mapping (sent as JSON) or as YAML text (sent as application/yaml)."""
    if isinstance(spec, str):
        headers = {"Content-Type": "application/yaml"}
        return Call("POST", "/v1/workflows", _model(Workflow), content=spec, headers=headers)
    return Call("POST", "/v1/workflows", _model(Workflow), json=dict(spec))


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
def register_agent(spec: Mapping[str, Any] | str) -> Call[Agent]:
    if isinstance(spec, str):
        headers = {"Content-Type": "application/yaml"}
        return Call("POST", "/v1/agents", _model(Agent), content=spec, headers=headers)
    return Call("POST", "/v1/agents", _model(Agent), json=dict(spec))


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
        body["spec"] = dict(spec)
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


def cancel_run(run_id: str) -> Call[dict[str, Any]]:
    return Call("POST", f"/v1/runs/{_seg(run_id)}/cancel", _model(dict[str, Any]))


def run_timeline(run_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/runs/{_seg(run_id)}/timeline", _model(dict[str, Any]))


# -- documents ---------------------------------------------------------------------------
def create_collection(name: str, description: str | None = None) -> Call[Collection]:
    body = _params(name=name, description=description)
    return Call("POST", "/v1/collections", _model(Collection), json=body)


def list_collections() -> Call[Page[Collection]]:
    return Call("GET", "/v1/collections", _model(Page[Collection]))


def upload_document(
    collection: str, filename: str, content: bytes, content_type: str, title: str | None = None
) -> Call[Document]:
    files = {"file": (filename, content, content_type)}
    data = _params(title=title)
    path = f"/v1/collections/{_seg(collection)}/documents"
    return Call("POST", path, _model(Document), files=files, data=data)


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

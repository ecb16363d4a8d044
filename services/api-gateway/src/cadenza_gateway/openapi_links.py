"""OpenAPI links: how a created resource is addressed by the operations that read, change
and delete it (``POST /v1/runs`` → ``GET /v1/runs/{run_id}``). A client generator and a
reader learn the API's shape from them, and schemathesis' stateful phase follows them to
chain real requests (create, then read, cancel, fork, delete what it created) instead of
guessing identifiers that do not exist.

Declared once, here, by method and path; the operation ids FastAPI generates are looked up
when the document is built, so a renamed handler cannot leave a dangling link (an unknown
source or target fails the build).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Link:
    name: str
    target: tuple[str, str]  # (method, path template)
    parameters: dict[str, str] = field(default_factory=dict)  # parameter → runtime expression


_RUN = "$response.body#/id"
_RUN_LINKS = [
    Link("GetRun", ("get", "/v1/runs/{run_id}"), {"run_id": _RUN}),
    Link("GetRunStatus", ("get", "/v1/runs/{run_id}/status"), {"run_id": _RUN}),
    Link("GetRunTimeline", ("get", "/v1/runs/{run_id}/timeline"), {"run_id": _RUN}),
    Link("GetRunCalls", ("get", "/v1/runs/{run_id}/calls"), {"run_id": _RUN}),
    Link("CancelRun", ("post", "/v1/runs/{run_id}/cancel"), {"run_id": _RUN}),
    Link("ResumeRun", ("post", "/v1/runs/{run_id}/resume"), {"run_id": _RUN}),
    Link("RerunRun", ("post", "/v1/runs/{run_id}/rerun"), {"run_id": _RUN}),
    Link("ForkRun", ("post", "/v1/runs/{run_id}/fork"), {"run_id": _RUN}),
    Link("DiffRunWithItself", ("get", "/v1/runs/{run_id}/diff/{other_id}"),
         {"run_id": _RUN, "other_id": _RUN}),
]  # fmt: skip


def _versions(kind: str) -> list[Link]:
    """A registered workflow or agent: its latest, its versions, the version just made."""
    name = "$response.body#/name"
    singular = kind.title()[:-1]
    return [
        Link(f"GetLatest{singular}", ("get", f"/v1/{kind}/{{name}}"), {"name": name}),
        Link(f"List{singular}Versions", ("get", f"/v1/{kind}/{{name}}/versions"), {"name": name}),
        Link(
            f"Get{singular}Version",
            ("get", f"/v1/{kind}/{{name}}/versions/{{version}}"),
            {"name": name, "version": "$response.body#/version"},
        ),
    ]


def _named(base: str, *actions: tuple[str, str, str]) -> list[Link]:
    name = "$response.body#/name"
    return [
        Link(label, (method, base + suffix), {"name": name}) for label, method, suffix in actions
    ]


# (method, path, status) of a creating answer → the links it carries.
LINKS: dict[tuple[str, str, str], list[Link]] = {
    ("post", "/v1/workflows", "201"): _versions("workflows"),
    ("post", "/v1/agents", "201"): _versions("agents"),
    ("post", "/v1/runs", "201"): _RUN_LINKS,
    ("post", "/v1/runs", "200"): _RUN_LINKS,  # an Idempotency-Key replay: the same run
    ("post", "/v1/runs/{run_id}/rerun", "201"): _RUN_LINKS,
    ("post", "/v1/runs/{run_id}/fork", "201"): _RUN_LINKS,
    # A run as it stands: the calls of its first task (a created run may have no task yet).
    ("get", "/v1/runs/{run_id}", "200"): [
        Link("GetFirstTaskCalls", ("get", "/v1/runs/{run_id}/tasks/{task_id}/calls"),
             {"run_id": _RUN, "task_id": "$response.body#/tasks/0/node_id"}),
    ],
    ("post", "/v1/evaluations", "201"): [
        Link("GetEvaluation", ("get", "/v1/evaluations/{evaluation_id}"),
             {"evaluation_id": "$response.body#/id"}),
    ],
    ("put", "/v1/datasets/{dataset}/records", "200"): [
        Link("GetFirstRecord", ("get", "/v1/datasets/{dataset}/records/{key}"),
             {"dataset": "$response.body#/dataset", "key": "$request.body#/records/0/key"}),
        Link("DeleteDataset", ("delete", "/v1/datasets/{dataset}"),
             {"dataset": "$response.body#/dataset"}),
    ],
    ("post", "/v1/collections", "201"): [
        Link(label, (method, path), {"collection": "$response.body#/name"})
        for label, method, path in (
            ("GetCollection", "get", "/v1/collections/{collection}"),
            ("ListDocuments", "get", "/v1/collections/{collection}/documents"),
            ("UploadDocument", "post", "/v1/collections/{collection}/documents"),
            ("Search", "post", "/v1/collections/{collection}/search"),
        )
    ],
    ("post", "/v1/api-keys", "201"): [
        Link("RotateApiKey", ("post", "/v1/api-keys/{key_id}/rotate"),
             {"key_id": "$response.body#/id"}),
        Link("RevokeApiKey", ("delete", "/v1/api-keys/{key_id}"),
             {"key_id": "$response.body#/id"}),
    ],
    ("put", "/v1/budgets/{period}", "200"): [
        Link("DeleteBudget", ("delete", "/v1/budgets/{period}"),
             {"period": "$response.body#/period"}),
    ],
    ("post", "/v1/triggers", "201"): _named(
        "/v1/triggers/{name}",
        ("GetTrigger", "get", ""),
        ("ListTriggerVersions", "get", "/versions"),
        ("DisableTrigger", "post", "/disable"),
        ("EnableTrigger", "post", "/enable"),
        ("DeleteTrigger", "delete", ""),
    ),
    ("post", "/v1/schedules", "201"): _named(
        "/v1/schedules/{name}",
        ("GetSchedule", "get", ""),
        ("PauseSchedule", "post", "/pause"),
        ("ResumeSchedule", "post", "/resume"),
        ("ReplaceSchedule", "put", ""),
        ("DeleteSchedule", "delete", ""),
    ),
}  # fmt: skip


def add_links(schema: dict[str, Any]) -> None:
    """Put LINKS into ``schema`` (an OpenAPI document FastAPI generated), in place."""
    paths = schema.get("paths", {})

    def operation(method: str, path: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = paths[path][method]
        except KeyError:
            raise LookupError(
                f"OpenAPI link to or from an unknown operation {method} {path}"
            ) from None
        return found

    for (method, path, status), links in LINKS.items():
        response = operation(method, path)["responses"].get(status)
        if response is None:
            raise LookupError(f"OpenAPI link from an undocumented answer {status} {path}")
        targets = response.setdefault("links", {})
        for link in links:
            target = operation(*link.target)
            targets[link.name] = {
                "operationId": target["operationId"],
                "parameters": dict(link.parameters),
            }

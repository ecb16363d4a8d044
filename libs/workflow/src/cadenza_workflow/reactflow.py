"""Convert a React Flow ``{nodes, edges}`` export into a native spec document.

* Each node becomes a task: its ``data`` holds the task fields (``kind``, ``tool``, ``with``,
  ``when``…); the task id is ``data.id`` if given, else the node ``id``; ``data.label``
  becomes the ``description`` when there is none.
* Nodes whose ``type`` is a UI-only type (:data:`UI_NODE_TYPES`) are ignored, with their
  edges.
* An edge ``source → target`` adds the source task to the target's ``needs``; an edge
  leaving the ``on_failure`` handle (``sourceHandle: on_failure`` or
  ``data.kind: on_failure``) sets the source's ``on_failure`` and marks the target
  ``fallback: true`` unless the node says otherwise.
* Workflow fields (``name``, ``description``, ``inputs``, ``output``) come from the top
  level or from a top-level ``data`` object; ``viewport`` is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ErrorCode, SpecError, SpecValidationError

UI_NODE_TYPES = frozenset({"group", "note", "comment", "annotation", "start", "end"})
WORKFLOW_FIELDS = ("name", "description", "inputs", "output")
ON_FAILURE_HANDLE = "on_failure"


def is_react_flow(data: Mapping[str, Any]) -> bool:
    """True for a React Flow export: it has ``nodes`` and no ``tasks``."""
    return "nodes" in data and "tasks" not in data


def _bad(field: str, detail: str) -> SpecError:
    return SpecError.at(ErrorCode.INVALID_FIELD, field, detail)


def from_react_flow(data: Mapping[str, Any]) -> dict[str, Any]:
    """The native spec document for a React Flow export (shape is checked afterwards by
    the models). Raises :class:`SpecValidationError` for nodes/edges it cannot read."""
    doc: dict[str, Any] = {
        k: v for k, v in data.items() if k not in ("nodes", "edges", "viewport", "data")
    }
    meta = data.get("data")
    if isinstance(meta, Mapping):
        for key in WORKFLOW_FIELDS:
            if key in meta and key not in doc:
                doc[key] = meta[key]
    nodes, edges = data.get("nodes"), data.get("edges") or []
    errors: list[SpecError] = []
    if not isinstance(nodes, list):
        raise SpecValidationError([_bad("nodes", "must be a list of nodes")])
    if not isinstance(edges, list):
        raise SpecValidationError([_bad("edges", "must be a list of edges")])

    tasks: list[dict[str, Any]] = []
    by_node: dict[str, dict[str, Any]] = {}
    ignored: set[str] = set()
    for i, node in enumerate(nodes):
        if not isinstance(node, Mapping) or "id" not in node:
            errors.append(_bad(f"nodes[{i}]", "a node must be an object with an 'id'"))
            continue
        node_id = str(node["id"])
        if node.get("type") in UI_NODE_TYPES:
            ignored.add(node_id)
            continue
        node_data = node.get("data") or {}
        if not isinstance(node_data, Mapping):
            errors.append(_bad(f"nodes[{i}].data", "must be an object of task fields"))
            continue
        task = {k: v for k, v in node_data.items() if k != "label"}
        if isinstance(task.get("needs"), list):
            task["needs"] = list(task["needs"])  # edges append to it; never mutate the input
        if "label" in node_data and "description" not in task:
            task["description"] = node_data["label"]
        task.setdefault("id", node_id)
        if node_id in by_node:
            errors.append(_bad(f"nodes[{i}].id", f"node id '{node_id}' is used more than once"))
            continue
        by_node[node_id] = task
        tasks.append(task)

    for j, edge in enumerate(edges):
        if not isinstance(edge, Mapping):
            errors.append(_bad(f"edges[{j}]", "an edge must be an object"))
            continue
        src, tgt = str(edge.get("source")), str(edge.get("target"))
        if src in ignored or tgt in ignored:
            continue
        if src not in by_node or tgt not in by_node:
            end, node_id = ("source", src) if src not in by_node else ("target", tgt)
            errors.append(_bad(f"edges[{j}].{end}", f"no node with id '{node_id}'"))
            continue
        source, target = by_node[src], by_node[tgt]
        edge_data = edge.get("data")
        edge_kind = edge_data.get("kind") if isinstance(edge_data, Mapping) else None
        if ON_FAILURE_HANDLE in (edge.get("sourceHandle"), edge_kind):
            source["on_failure"] = target["id"]
            target.setdefault("fallback", True)
            continue
        needs = target.setdefault("needs", [])
        if isinstance(needs, list) and source["id"] not in needs:
            needs.append(source["id"])

    if errors:
        raise SpecValidationError(errors)
    doc["tasks"] = tasks
    return doc

"""/v1/datasets: a tenant's reference data (transactions, PSP status, customers…) that
dataset-backed tools look up by key. Records are upserted in bulk and read one at a time."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from cadenza_workflow import SpecValidationError
from cadenza_workflow.loading import format_path, load_document
from fastapi import APIRouter, Path, Query, Request, Response
from opentelemetry import trace
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from ... import crud
from ...auth import CanReadDatasets, CanWriteDatasets
from ...crud import datasets as data
from ...documents import (
    MAX_VALUE_DEPTH,
    DocumentFormat,
    check_yaml_aliases,
    find_non_json,
    json_size,
    nesting_depth,
    workflow_document_format,
)
from ...problems import (
    FieldProblem,
    InvalidRequest,
    MalformedBody,
    ProblemError,
    problem_responses,
)
from ...query_types import BOOLEAN_TEXT
from ..deps import SessionDep

log = logging.getLogger("cadenza.gateway")
tracer = trace.get_tracer("cadenza.gateway")
router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=problem_responses(422))

DATASET_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
MAX_RECORDS = 10_000
"""Records in one PUT (the body limit, CADENZA_GATEWAY_MAX_BODY_BYTES, applies as well)."""
MAX_RECORD_BYTES = 64 * 1024
"""Largest `data` of one record, as compact JSON: a lookup result goes into a model prompt."""
MAX_KEY_LENGTH = 255

RECORDS_UPSERTED = Counter(
    "cadenza_gateway_dataset_records_upserted_total",
    "Reference records written through PUT /v1/datasets/{dataset}/records.",
    ["tenant"],
)


class DatasetNotFound(ProblemError):
    status, slug, title = 404, "dataset-not-found", "Dataset not found"


class RecordNotFound(ProblemError):
    status, slug, title = 404, "record-not-found", "Record not found"


# --------------------------------------------------------------------------- bodies


class RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH, description="The lookup key.")
    data: Any = Field(description="Any JSON value except null (usually an object).")


class RecordsIn(BaseModel):
    """`PUT /v1/datasets/{dataset}/records` body (a bundle's `data/*.yaml` file as is)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(
        default=None, description="Optional; when given it must equal the dataset in the path."
    )
    records: list[RecordIn] = Field(max_length=MAX_RECORDS, description="Records to upsert.")


class DatasetLoaded(BaseModel):
    dataset: str
    upserted: int = Field(description="Records inserted or replaced by this request.")
    deleted: int = Field(description="Records removed because `replace=true` left them out.")
    records: int = Field(description="Records in the dataset now.")


class DatasetSummaryPublic(BaseModel):
    dataset: str
    records: int = Field(description="How many records it holds.")
    updated_at: datetime = Field(description="Last change to any of its records.")


class DatasetsPublic(BaseModel):
    items: list[DatasetSummaryPublic]


class RecordPublic(BaseModel):
    dataset: str
    key: str
    data: Any
    updated_at: datetime


# --------------------------------------------------------------------------- parsing


def _parse(body: bytes, fmt: DocumentFormat | None) -> Any:
    try:
        if fmt != "json":
            check_yaml_aliases(body.decode("utf-8-sig", errors="replace"))
        return load_document(
            body, {"json": "application/json", "yaml": "application/yaml"}.get(fmt or "")
        )
    except SpecValidationError as exc:
        detail = exc.errors[0].message if exc.errors else str(exc)
        raise MalformedBody(
            detail, errors=[FieldProblem(field="", code="invalid_syntax", message=detail)]
        ) from None
    except RecursionError:
        detail = "the document nests too deeply"
        raise MalformedBody(
            detail, errors=[FieldProblem(field="", code="invalid_syntax", message=detail)]
        ) from None


def _problem(field: str, code: str, detail: str) -> FieldProblem:
    return FieldProblem(field=field, code=code, message=f"field {field}: {detail}")


def _shape_problems(exc: ValidationError) -> list[FieldProblem]:
    out = []
    for err in exc.errors(include_url=False):
        field = format_path([p for p in err["loc"] if isinstance(p, str | int)])
        code = {"missing": "missing_field", "extra_forbidden": "unknown_field"}.get(
            err["type"], "invalid_field"
        )
        msg = str(err["msg"]).removeprefix("Value error, ")
        out.append(_problem(field or "records", code, msg[:1].lower() + msg[1:]))
    return out


def _record_problems(body: RecordsIn, dataset: str) -> list[FieldProblem]:
    """What the shape cannot say: matching dataset, unique keys, usable and bounded data."""
    problems = []
    if body.dataset is not None and body.dataset != dataset:
        problems.append(
            _problem(
                "dataset", "invalid_field", f"names {body.dataset!r} but the path says {dataset!r}"
            )
        )
    first: dict[str, int] = {}
    for i, record in enumerate(body.records):
        if not record.key.isprintable():
            problems.append(
                _problem(f"records[{i}].key", "invalid_field", "contains control characters")
            )
        if record.key in first:
            where = f"records[{first[record.key]}].key"
            problems.append(
                _problem(
                    f"records[{i}].key",
                    "invalid_field",
                    f"duplicate key {record.key!r} (first at {where})",
                )
            )
        first.setdefault(record.key, i)
        field = f"records[{i}].data"
        if record.data is None:
            problems.append(_problem(field, "missing_field", "required, and must not be null"))
            continue
        bad = find_non_json(record.data, field)
        if bad is not None:
            problems.append(_problem(bad, "invalid_field", "NaN and Infinity are not JSON"))
        elif nesting_depth(record.data) > MAX_VALUE_DEPTH:
            problems.append(
                _problem(field, "invalid_field", f"nests deeper than {MAX_VALUE_DEPTH} levels")
            )
        elif (size := json_size(record.data)) > MAX_RECORD_BYTES:
            problems.append(
                _problem(
                    field, "invalid_field", f"takes {size} bytes as JSON (limit {MAX_RECORD_BYTES})"
                )
            )
    return problems


def _validate(document: Any, dataset: str) -> RecordsIn:
    if not isinstance(document, dict):
        got = "a list" if isinstance(document, list) else type(document).__name__
        detail = f"the body must be a mapping {{records: [{{key, data}}, ...]}}, got {got}"
        raise InvalidRequest(detail, errors=[_problem("records", "invalid_field", detail)])
    try:
        body = RecordsIn.model_validate(document)
    except ValidationError as exc:
        errors = _shape_problems(exc)
    else:
        errors = _record_problems(body, dataset)
    if errors:
        shown = "; ".join(e.message for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise InvalidRequest(f"invalid records: {shown}{more}", errors=errors)
    return body


# --------------------------------------------------------------------------- routes

DatasetPath = Annotated[
    str,
    Path(
        pattern=DATASET_NAME_PATTERN,
        description="Dataset name: lowercase letters, digits, '_', '.', '-' (max 63).",
    ),
]

# Written out (not RecordsIn.model_json_schema()): its `#/$defs/...` references would not
# resolve inside the OpenAPI document.
_RECORDS_SCHEMA = {
    "type": "object",
    "properties": {
        "dataset": {"type": "string", "description": "Optional; must equal the path's."},
        "records": {
            "type": "array",
            "maxItems": MAX_RECORDS,
            "items": {
                "type": "object",
                "properties": {
                    "key": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
                    "data": {"description": "Any JSON value except null."},
                },
                "required": ["key", "data"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["records"],
    "additionalProperties": False,
}
_RECORDS_BODY = {
    "requestBody": {
        "required": True,
        "description": "`{records: [{key, data}, ...]}` as JSON or YAML.",
        "content": {
            "application/json": {"schema": _RECORDS_SCHEMA},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


@router.put(
    "/{dataset}/records",
    response_model=DatasetLoaded,
    summary="Upsert records of a dataset",
    responses=problem_responses(400, 413, 415, 422),
    openapi_extra=_RECORDS_BODY,
)
async def put_records(
    dataset: DatasetPath,
    request: Request,
    session: SessionDep,
    tenant: CanWriteDatasets,
    replace: Annotated[
        bool,
        Query(description="Also delete the dataset's records this body leaves out."),
        BOOLEAN_TEXT,
    ] = False,
) -> DatasetLoaded:
    """Insert or replace each record by key (one transaction); other records stay unless
    `replace=true`."""
    fmt = workflow_document_format(request.headers.get("content-type"), what="records")
    raw = await request.body()
    with tracer.start_as_current_span("cadenza.gateway.load_dataset") as span:
        span.set_attribute("cadenza.dataset", dataset)
        body = _validate(await run_in_threadpool(_parse, raw, fmt), dataset)
        pairs = [(r.key, r.data) for r in body.records]
        async with session.begin():
            await data.upsert_records(
                session=session, tenant_id=tenant, dataset=dataset, records=pairs
            )
            deleted = 0
            if replace:
                deleted = await data.delete_records_except(
                    session=session, tenant_id=tenant, dataset=dataset, keep=[k for k, _ in pairs]
                )
            total = await data.count_records(session=session, tenant_id=tenant, dataset=dataset)
            crud.record_audit(
                session=session,
                tenant_id=tenant,
                action="dataset.loaded",
                subject=f"dataset:{dataset}",
                data={"upserted": len(pairs), "deleted": deleted},
            )
        span.set_attribute("cadenza.dataset.records", len(pairs))
    RECORDS_UPSERTED.labels(tenant).inc(len(pairs))
    log.info(
        "dataset %s of tenant %s: %d upserted, %d deleted", dataset, tenant, len(pairs), deleted
    )
    return DatasetLoaded(dataset=dataset, upserted=len(pairs), deleted=deleted, records=total)


@router.get("", response_model=DatasetsPublic, summary="List datasets with record counts")
async def list_datasets(session: SessionDep, tenant: CanReadDatasets) -> DatasetsPublic:
    async with session.begin():
        found = await data.list_datasets(session=session, tenant_id=tenant)
    return DatasetsPublic(
        items=[
            DatasetSummaryPublic(dataset=d.dataset, records=d.records, updated_at=d.updated_at)
            for d in found
        ]
    )


@router.get(
    "/{dataset}/records/{key:path}",
    response_model=RecordPublic,
    summary="Get one record",
    responses=problem_responses(404),
)
async def get_record(
    dataset: DatasetPath,
    key: Annotated[str, Path(min_length=1, max_length=MAX_KEY_LENGTH, description="Record key.")],
    session: SessionDep,
    tenant: CanReadDatasets,
) -> RecordPublic:
    async with session.begin():
        record = await data.get_record(session=session, tenant_id=tenant, dataset=dataset, key=key)
    if record is None:
        raise RecordNotFound(f"dataset {dataset!r} has no record {key!r}")
    return RecordPublic(
        dataset=dataset, key=record.key, data=record.data, updated_at=record.updated_at
    )


@router.delete(
    "/{dataset}",
    status_code=204,
    summary="Delete a dataset and all its records",
    responses=problem_responses(404),
)
async def delete_dataset(
    dataset: DatasetPath, session: SessionDep, tenant: CanWriteDatasets
) -> Response:
    async with session.begin():
        deleted = await data.delete_dataset(session=session, tenant_id=tenant, dataset=dataset)
        if deleted:
            crud.record_audit(
                session=session,
                tenant_id=tenant,
                action="dataset.deleted",
                subject=f"dataset:{dataset}",
                data={"deleted": deleted},
            )
    if not deleted:
        raise DatasetNotFound(f"no dataset named {dataset!r}")
    log.info("dataset %s of tenant %s deleted (%d records)", dataset, tenant, deleted)
    return Response(status_code=204)

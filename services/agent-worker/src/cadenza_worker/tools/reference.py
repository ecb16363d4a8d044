"""Dataset-backed tools: look a record up by key in the task tenant's reference data
(`reference_records`, loaded with `PUT /v1/datasets/{dataset}/records`).

A missing record is an answer, not a failure: the tool returns `{"error": "no transaction
'tx_9'", "found": false}`, which an agent reads as an observation and a workflow can test
in a `when:`. Only a missing database or an outage fails the call.
"""

from __future__ import annotations

import logging
from typing import Any

from cadenza_events import NonRetryableError, RetryableError
from cadenza_state import ReferenceRecord
from opentelemetry import trace
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy.exc import SQLAlchemyError

from ..errors import parse_params
from .base import ToolContext

log = logging.getLogger("cadenza.worker.tools")
tracer = trace.get_tracer("cadenza.worker")

LOOKUPS = Counter(
    "cadenza_worker_reference_lookups_total",
    "Reference-data lookups by dataset-backed tools, by tool and outcome (found, not_found).",
    ["tool", "outcome"],
)


class DatasetLookupTool:
    """A tool that returns one record of ``dataset`` whose key is the ``key_param`` argument.

    ``what`` names the record in not-found answers (`no transaction 'tx_9'`).
    """

    side_effects = False  # a read: replaying it on resume is harmless

    def __init__(
        self, name: str, dataset: str, key_param: str, description: str, what: str | None = None
    ) -> None:
        self.name = name
        self.dataset = dataset
        self.key_param = key_param
        self.description = description
        self.what = what or dataset.rstrip("s")
        key_field: Any = (
            str,
            Field(min_length=1, max_length=255, description=f"The {self.what}'s id."),
        )
        self.params_model: type[BaseModel] = create_model(
            "".join(part.title() for part in name.split("_")) + "Args",
            __config__=ConfigDict(extra="forbid"),
            **{key_param: key_field},
        )

    async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        args = parse_params(self.params_model, params, self.name)
        key: str = getattr(args, self.key_param)
        if ctx.sessions is None:
            raise NonRetryableError(
                f"{self.name}: this worker has no database to read dataset {self.dataset!r}",
                code="no_database",
            )
        with tracer.start_as_current_span(
            f"lookup {self.dataset}",
            attributes={"cadenza.dataset": self.dataset, "cadenza.tool.name": self.name},
        ) as span:
            try:
                async with ctx.sessions() as session:
                    record = await session.get(ReferenceRecord, (ctx.tenant_id, self.dataset, key))
            except SQLAlchemyError as exc:
                raise RetryableError(
                    f"{self.name}: reading dataset {self.dataset!r} failed: {exc}"[:500],
                    code="reference_unavailable",
                ) from exc
            span.set_attribute("cadenza.reference.found", record is not None)
        if record is None:
            LOOKUPS.labels(self.name, "not_found").inc()
            log.info("%s: no %s %r for tenant %s", self.name, self.what, key, ctx.tenant_id)
            return {"found": False, "error": f"no {self.what} {key!r}"}
        LOOKUPS.labels(self.name, "found").inc()
        return record.data


def scenario_tools() -> list[DatasetLookupTool]:
    """The lookups the example scenarios use (payments, fraud, support); see docs/tools.md."""
    return [
        DatasetLookupTool(
            "get_transaction",
            "transactions",
            "transaction_id",
            "Get a payment transaction by id: amount, currency, customer, PSP, status and "
            "decline code.",
            what="transaction",
        ),
        DatasetLookupTool(
            "get_psp_status",
            "psps",
            "psp",
            "Get the current status of a payment service provider (PSP) by name, e.g. "
            "'stripe': operational or outage, error rate.",
            what="PSP",
        ),
        DatasetLookupTool(
            "check_routing_logs",
            "routing_logs",
            "transaction_id",
            "Get the payment routing log of a transaction: which PSPs were tried and what "
            "each answered.",
            what="routing log for transaction",
        ),
        DatasetLookupTool(
            "get_customer",
            "customers",
            "customer_id",
            "Get a customer by id: country, account age, past chargebacks, tier.",
            what="customer",
        ),
        DatasetLookupTool(
            "get_ticket",
            "tickets",
            "ticket_id",
            "Get a support ticket by id: subject, body, customer, priority.",
            what="ticket",
        ),
    ]

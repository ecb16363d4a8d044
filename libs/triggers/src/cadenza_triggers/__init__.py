"""cadenza_triggers: what starts runs besides an API call — triggers on upstream events
(Kafka topics, POST /v1/events) and cron schedules, each exactly once."""

from .cloudevents import (
    BATCH,
    STRUCTURED,
    CloudEvent,
    UndecodableEvent,
    UnsupportedContent,
    from_http,
    from_kafka,
    kafka_decoder,
)
from .firing import PassReport, fire_due
from .ledgers import LedgerPruned, count_ledger_rows, prune_ledgers
from .matching import FilterFailed, InvalidInputs, MappingFailed, Trigger, WorkflowMissing
from .schedules import CatchUp, Overlap, ScheduleSpec, due_ticks, next_fire, upcoming
from .spec import EventFilter, TriggerSpec
from .starting import (
    Prepared,
    SpecCache,
    Started,
    load_triggers,
    prepare_run,
    start_for_event,
)

__all__ = [
    "BATCH",
    "STRUCTURED",
    "CatchUp",
    "CloudEvent",
    "EventFilter",
    "FilterFailed",
    "InvalidInputs",
    "LedgerPruned",
    "MappingFailed",
    "Overlap",
    "PassReport",
    "Prepared",
    "ScheduleSpec",
    "SpecCache",
    "Started",
    "Trigger",
    "TriggerSpec",
    "UndecodableEvent",
    "UnsupportedContent",
    "WorkflowMissing",
    "count_ledger_rows",
    "due_ticks",
    "fire_due",
    "from_http",
    "from_kafka",
    "kafka_decoder",
    "load_triggers",
    "next_fire",
    "prepare_run",
    "prune_ledgers",
    "start_for_event",
    "upcoming",
]

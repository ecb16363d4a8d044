"""cadenza_events: the one event contract every Cadenza service imports."""

from .bus import (
    BatchHandler,
    Bus,
    Consumer,
    ConsumerOptions,
    Handler,
    OutagePredicate,
    Publisher,
    RawRecord,
    RetryPolicy,
)
from .envelope import Envelope, Message, decode, encode, unbatch
from .errors import (
    CadenzaError,
    DecodeError,
    NonRetryableError,
    RetryableError,
    Unavailable,
    is_retryable,
)
from .factory import create_bus
from .memory import MemoryBroker, MemoryBus
from .payloads import (
    DEFAULT_TENANT,
    PAYLOAD_TYPES,
    DeadLetter,
    DocIngest,
    Handoff,
    Payload,
    PlanRequested,
    RunCancelRequested,
    RunEvent,
    RunEventBatch,
    TaskError,
    TaskReady,
    TaskResult,
)
from .settings import BusSettings
from .topics import Topic, TopicRegistry

__all__ = [
    "DEFAULT_TENANT",
    "PAYLOAD_TYPES",
    "BatchHandler",
    "Bus",
    "BusSettings",
    "CadenzaError",
    "Consumer",
    "ConsumerOptions",
    "DeadLetter",
    "DecodeError",
    "DocIngest",
    "Envelope",
    "Handler",
    "Handoff",
    "MemoryBroker",
    "MemoryBus",
    "Message",
    "NonRetryableError",
    "OutagePredicate",
    "Payload",
    "PlanRequested",
    "Publisher",
    "RawRecord",
    "RetryPolicy",
    "RetryableError",
    "RunCancelRequested",
    "RunEvent",
    "RunEventBatch",
    "TaskError",
    "TaskReady",
    "TaskResult",
    "Topic",
    "TopicRegistry",
    "Unavailable",
    "create_bus",
    "decode",
    "encode",
    "is_retryable",
    "unbatch",
]

"""cadenza_worker: the agent worker — consumes `task.ready`, runs each task once per
attempt (lease, retries, timeouts, cancellation, effect journal) and publishes `task.result`."""

from .claimcheck import ClaimCheck, output_key
from .errors import (
    InvalidOutputError,
    InvalidParamsError,
    ParamsUnavailableError,
    TaskTimeoutError,
    UnknownKindError,
    UnknownToolError,
    parse_params,
    to_task_error,
)
from .execution import Outcome, Progress, run_with_retries, wait_spec_backoff
from .handler import TaskHandler
from .journal import EffectJournal
from .kinds import Executor, ExecutorRegistry, TaskCall, ToolExecutor, invoke_tool
from .lease import Claim, Presence, StopReason, TaskClaims
from .reporting import Reporter
from .settings import CONSUMER_GROUP, WorkerSettings
from .tools import (
    BlockedAddressError,
    HttpStatusError,
    ResponseTooLargeError,
    Tool,
    ToolContext,
    ToolRegistry,
    builtin_tools,
)
from .worker import Worker

__all__ = [
    "CONSUMER_GROUP",
    "BlockedAddressError",
    "Claim",
    "ClaimCheck",
    "EffectJournal",
    "Executor",
    "ExecutorRegistry",
    "HttpStatusError",
    "InvalidOutputError",
    "InvalidParamsError",
    "Outcome",
    "ParamsUnavailableError",
    "Presence",
    "Progress",
    "Reporter",
    "ResponseTooLargeError",
    "StopReason",
    "TaskCall",
    "TaskClaims",
    "TaskHandler",
    "TaskTimeoutError",
    "Tool",
    "ToolContext",
    "ToolExecutor",
    "ToolRegistry",
    "UnknownKindError",
    "UnknownToolError",
    "Worker",
    "WorkerSettings",
    "builtin_tools",
    "invoke_tool",
    "output_key",
    "parse_params",
    "run_with_retries",
    "to_task_error",
    "wait_spec_backoff",
]

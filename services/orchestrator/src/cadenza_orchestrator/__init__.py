"""cadenza_orchestrator: expands workflow runs into tasks and drives them through an explicit
state machine (``machine``), fed by ``plan.requested`` and ``task.result``."""

from . import machine
from .engine import Effects, Transition
from .graph import GraphCache, Node, RunGraph, task_id_for
from .handlers import RunHandlers
from .outcome import OPEN, SETTLED, TERMINAL, Outcome
from .rows import TaskRow
from .service import Orchestrator
from .settings import OrchestratorSettings
from .sweeper import Sweeper

__all__ = [
    "OPEN",
    "SETTLED",
    "TERMINAL",
    "Effects",
    "GraphCache",
    "Node",
    "Orchestrator",
    "OrchestratorSettings",
    "Outcome",
    "RunGraph",
    "RunHandlers",
    "Sweeper",
    "TaskRow",
    "Transition",
    "machine",
    "task_id_for",
]

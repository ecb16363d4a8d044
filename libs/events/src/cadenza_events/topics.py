"""Logical topics, their physical names (with a prefix) and their key rules (DESIGN §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .envelope import Envelope


class Topic(StrEnum):
    PLAN_REQUESTED = "plan.requested"
    TASK_READY = "task.ready"
    TASK_RESULT = "task.result"
    RUN_EVENTS = "run.events"
    RUN_CONTROL = "run.control"
    DOC_INGEST = "doc.ingest"
    DLQ = "dlq"


def _by_plan(env: Envelope) -> str | None:
    return env.plan_id


def _by_partition_key_or_task(env: Envelope) -> str | None:
    return env.partition_key or env.task_id


def _by_subject(env: Envelope) -> str | None:
    return env.subject or env.id


# Why these keys: task.ready spreads across workers (one key per task), except a run's few
# tool tasks made ready together, which share the envelope's ``partition_key`` (the run):
# one worker fetches them in one request and reports them in one. Everything about a plan
# lands on one partition so one orchestrator sees a plan's events in order.
# run.control is heard by every worker process (``Bus.listener``), whatever its key.
KEY_RULES = {
    Topic.PLAN_REQUESTED: _by_plan,
    Topic.TASK_READY: _by_partition_key_or_task,
    Topic.TASK_RESULT: _by_plan,
    Topic.RUN_EVENTS: _by_plan,
    Topic.RUN_CONTROL: _by_plan,
    Topic.DOC_INGEST: _by_subject,
    Topic.DLQ: _by_subject,
}


@dataclass(frozen=True)
class TopicRegistry:
    """Maps logical topics to physical names and partition counts."""

    prefix: str = "cadenza."
    partitions: int = 6
    overrides: dict[Topic, int] = field(default_factory=dict)

    def name(self, topic: Topic) -> str:
        return f"{self.prefix}{topic.value}"

    def group(self, name: str) -> str:
        """The physical consumer group of ``name``: prefixed like the topics, so two
        deployments sharing one Kafka cluster never join (and rebalance) each other's groups."""
        return name if name.startswith(self.prefix) else f"{self.prefix}{name}"

    def partitions_for(self, topic: Topic) -> int:
        return self.overrides.get(topic, self.partitions)

    def topic_of(self, name: str) -> Topic | None:
        if not name.startswith(self.prefix):
            return None
        try:
            return Topic(name[len(self.prefix) :])
        except ValueError:
            return None

    def key_for(self, topic: Topic, env: Envelope) -> str:
        key = KEY_RULES[topic](env)
        if not key:
            raise ValueError(
                f"event {env.type} published to {topic} needs a key ({topic} key rule)"
            )
        return key

    def all(self) -> list[Topic]:
        return list(Topic)

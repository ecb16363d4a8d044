"""Settings for the event bus, shared by every service that publishes or consumes."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BusSettings(BaseSettings):
    """Where the bus lives and how topics are named. Env prefix ``CADENZA_BUS_``."""

    model_config = SettingsConfigDict(env_prefix="CADENZA_BUS_", extra="ignore")

    backend: str = Field(
        default="kafka",
        description="`kafka` (production: a real Apache Kafka) or `memory` (cadenza dev, unit tests).",
        pattern="^(kafka|memory)$",
    )
    bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        description="Kafka bootstrap servers, comma separated (the project's infra listens on 19092).",
    )
    topic_prefix: str = Field(
        default="cadenza.",
        description="Prefix of every physical topic name; lets several deployments or tests share a cluster.",
    )
    client_id: str = Field(default="cadenza", description="Kafka client id, shown in broker logs.")
    partitions: int = Field(
        default=6, ge=1, description="Partition count used when Cadenza creates its topics."
    )
    replication_factor: int = Field(
        default=1, ge=1, description="Replication factor used when Cadenza creates its topics."
    )
    commit_interval_s: float = Field(
        default=0.1,
        gt=0,
        description="How often a consumer commits the offsets of handled messages (batched commits).",
    )
    session_timeout_ms: int = Field(
        default=10_000,
        description="Kafka group session timeout: how fast a dead consumer is noticed.",
    )
    heartbeat_interval_ms: int = Field(
        default=1_000, description="Kafka consumer heartbeat interval."
    )
    fetch_max_wait_ms: int = Field(
        default=50,
        ge=1,
        description="Longest the broker holds a dispatch-path fetch whose partitions have no "
        "record yet, while fetched records wait to be handled (idle_fetch_wait_ms applies "
        "otherwise). Short on purpose: the client keeps one fetch in flight per broker, and "
        "leaves out of it the partitions whose fetched records are not all consumed yet; "
        "those wait for that fetch to come back before they are fetched again. With "
        "Kafka's 500 ms default, a backlog on one partition (a big fan-out's results) "
        "stalled 300-400 ms at a time behind idle ones.",
    )
    idle_fetch_wait_ms: int = Field(
        default=500,
        ge=1,
        description="Longest the broker holds a dispatch-path fetch while the consumer has "
        "nothing fetched left to handle: the fetch then names every assigned partition, so "
        "a record on any of them answers it at once, and holding it longer costs no latency; "
        "it only saves the idle round trips (about a third of an idle deployment's CPU at "
        "50 ms). Once fetched records wait, fetch_max_wait_ms applies again.",
    )
    producer_batch_bytes: int = Field(
        default=512 * 1024,
        ge=16 * 1024,
        le=900 * 1024,  # under the broker's default message.max.bytes (1 MB), with headroom
        description="Largest record batch the producer builds per partition. The client "
        "holds ONE pending batch per partition and makes a sender wait once it is full, "
        "until it has gone; at the client's 16 KiB, a plan's 5,000 task.ready events left "
        "~96 at a time, one round trip after another.",
    )
    linger_ms: int = Field(
        default=0,
        ge=0,
        description="Producer linger: how long a record waits for others to share its "
        "request. 0 sends at once; records still share one, because the producer keeps one "
        "request in flight per broker and those that arrive meanwhile leave together with "
        "the next. On bench/dispatch.py (docs/benchmarks.md, tenth session), 0 against 1 ms: "
        "the same CPU per task, the chain step -24 %, dispatch p50 -16 % and p99 -38 %.",
    )

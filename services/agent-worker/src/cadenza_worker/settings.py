"""Worker settings (env prefix ``CADENZA_WORKER_``)."""

from __future__ import annotations

import os
import secrets
import socket

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CONSUMER_GROUP = "cadenza-workers"


def _default_worker_id() -> str:
    # The random part keeps ids apart where host name and pid repeat: replicas of one
    # container image on the host's network all run as the same pid on the same host name.
    return f"{socket.gethostname()}-{secrets.token_hex(3)}-{os.getpid()}"


class WorkerSettings(BaseSettings):
    """How one worker process consumes `task.ready` and runs tasks."""

    model_config = SettingsConfigDict(
        env_prefix="CADENZA_WORKER_", extra="ignore", populate_by_name=True
    )

    worker_id: str = Field(
        default_factory=_default_worker_id,
        min_length=1,
        description="Identity written on leases, task rows and results (default hostname-random-pid).",
    )
    consumer_group: str = Field(
        default=CONSUMER_GROUP,
        min_length=1,
        description="Kafka consumer group of `task.ready`; workers of one pool share it.",
    )
    concurrency: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Tasks this worker runs at once. Tasks that wait (tools, remote LLMs) "
        "want many: what one fetch brings is handled together (one Redis pipeline for the "
        "claims, one produce request for the results), and at 16 a fan-out of no-op tasks "
        "cost a third more CPU per task than at 64 (docs/benchmarks.md). Agent tasks on the "
        "embedded model make one model call at a time per process: keep it near the cores "
        "there and add workers instead.",
    )
    lease_ttl_s: float = Field(
        default=6.0,
        gt=0,
        description="Lifetime of this worker process's heartbeat key, renewed every ttl/3 by "
        "one loop for all its tasks (which also watches their runs for cancellation). A "
        "worker silent this long is considered lost, and its tasks are dispatched again.",
    )
    claim_check_bytes: int = Field(
        default=262_144,
        ge=0,
        validation_alias=AliasChoices(
            "CADENZA_WORKER_CLAIM_CHECK_BYTES", "CADENZA_CLAIM_CHECK_BYTES", "claim_check_bytes"
        ),
        description="Outputs whose JSON is larger than this go to the object store and the "
        "result carries `output_ref` (also read from CADENZA_CLAIM_CHECK_BYTES).",
    )
    pii_detectors: list[str] = Field(
        default_factory=list,
        description="Extra PII detectors, as a JSON list of 'package.module:function' "
        "(each (text) -> [(entity, start, end)]), e.g. a named-entity model for person "
        "names installed with the worker image. Their findings join every PII policy's. "
        "A path that cannot be imported stops the worker at start.",
    )
    approval_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts (globs) `http_request` may write to (POST/PUT/PATCH/DELETE) "
        "without a person's approval; writes elsewhere wait in the approvals inbox.",
    )
    approval_timeout_s: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="How long a held tool call of a `tool` task waits for an answer "
        "(agents set theirs in `approval.timeout_s`); then it is rejected.",
    )
    http_allow_private: bool = Field(
        default=False,
        description="Let `http_request` reach private, loopback, link-local and other "
        "non-public addresses (off: protects internal services from workflow authors).",
    )
    http_max_response_bytes: int = Field(
        default=1_048_576, ge=1, description="Largest response body `http_request` reads."
    )
    http_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Upper bound on one `http_request` call; a task's own `timeout_s` "
        "param can only lower it.",
    )
    stop_broadcast: bool = Field(
        default=True,
        description="Listen on run.control (every worker process, no consumer group) and stop "
        "a stopped run's tasks in flight at once. Off, a stop reaches this worker only "
        "through the Redis marker its heartbeat reads every lease_ttl/3 (bench/run_stop.py "
        "compares the two).",
    )
    dispatch_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="How long an attempt waits, before its first side effect (a journaled "
        "tool call, an agent's first turn), for the orchestrator to commit its dispatch "
        "(a task.ready may be sent just before the commit: the orchestrator's "
        "early_dispatch). Past it the attempt is given up without a result "
        "(docs/execution.md).",
    )
    marker_ttl_s: int = Field(
        default=86_400,
        ge=60,
        description="Lifetime of the Redis lease and started/done markers of an attempt "
        "(must outlast any redelivery of its task.ready).",
    )
    result_publish_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="How long publishing a task.result is retried before the message is "
        "handed back to the bus for redelivery.",
    )
    shutdown_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="On stop, how long running tasks may finish before they are cancelled "
        "(their task.ready is redelivered to another worker).",
    )
    agent_schema_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="How many times an agent's answer that does not match its output_schema "
        "is sent back to the model (with the validation error) before the task fails.",
    )
    agent_observation_chars: int = Field(
        default=4_000,
        ge=100,
        description="Tool results and errors shown to the model are cut to this many characters.",
    )
    agent_tool_timeout_s: float = Field(
        default=30.0, gt=0, description="Time limit of one tool call made by an agent."
    )
    agent_max_tokens_per_turn: int = Field(
        default=512, ge=1, description="max_tokens of each LLM call an agent makes."
    )
    budget_reservation_ttl_s: float = Field(
        default=900.0,
        gt=0,
        description="How long a budget reservation made before an LLM call lives; one whose "
        "worker died is released by the reconciler after this (keep it above the LLM timeout).",
    )
    budget_reconcile_interval_s: float = Field(
        default=15.0, gt=0, description="How often each worker releases expired reservations."
    )
    provider_key_cache_s: float = Field(
        default=30.0,
        ge=0,
        description="How long a tenant's provider endpoint and key (BYOK), decrypted with "
        "CADENZA_SECRETS_MASTER_KEY, is reused before it is read again: a rotated or deleted "
        "key takes effect within this time.",
    )
    metrics_port: int = Field(
        default=9102, ge=0, le=65535, description="Prometheus /metrics port (0 disables)."
    )
    log_level: str = Field(default="INFO", description="Python logging level.")

    @property
    def heartbeat_interval_s(self) -> float:
        return self.lease_ttl_s / 3

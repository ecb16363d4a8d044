"""The worker service: consumes `task.ready` and runs each task exactly once per attempt."""

from __future__ import annotations

import logging
from typing import Any

from cadenza_events import Consumer, ConsumerOptions, Envelope, Listener, RetryPolicy, Topic
from cadenza_llm import ProviderRegistry
from cadenza_runtime import Resources, is_outage
from cadenza_state import EnvelopeCipher, SecretsSettings

from .agents import AgentExecutor, LoopLimits, TenantProviders
from .budgets import BudgetLedger, Reconciler
from .guardrails import load_detectors
from .handler import TaskHandler
from .holds import ApprovalGate
from .journal import EffectJournal
from .kinds import ExecutorRegistry, ToolExecutor
from .settings import WorkerSettings
from .tools import ToolRegistry, builtin_tools

log = logging.getLogger("cadenza.worker")

# Infrastructure errors (database, object store, broker) get a few patient retries before
# the bus dead-letters the message; the orchestrator's sweeper re-dispatches such a task.
_HANDLER_RETRY = RetryPolicy(max_attempts=5, initial_backoff_s=0.2, max_backoff_s=5.0)


class Worker:
    """`Worker(resources, settings)`; `await start()` / `await stop()`.

    ``tools`` replaces the built-in tool registry; ``llm`` the LLM providers agents use (by
    default from `LLMSettings`, i.e. `CADENZA_LLM_*`); ``executors`` the kind registry (by
    default `tool` and `agent`); ``secrets`` the master key of tenants' provider keys (by
    default `SecretsSettings`, i.e. `CADENZA_SECRETS_*`).
    """

    def __init__(
        self,
        resources: Resources,
        settings: WorkerSettings | None = None,
        *,
        tools: ToolRegistry | None = None,
        executors: ExecutorRegistry | None = None,
        llm: ProviderRegistry | None = None,
        secrets: SecretsSettings | None = None,
    ) -> None:
        self.settings = settings or WorkerSettings()
        self.resources = resources
        self.tools = tools if tools is not None else builtin_tools(self.settings)
        self.journal = EffectJournal(resources.sessions)
        gate = ApprovalGate(
            allow_hosts=tuple(self.settings.approval_allow_hosts),
            timeout_s=self.settings.approval_timeout_s,
        )
        self.llm = llm if llm is not None else ProviderRegistry()
        self.budgets = BudgetLedger(
            resources.hot, reservation_ttl_s=self.settings.budget_reservation_ttl_s
        )
        self._reconciler = Reconciler(self.budgets, self.settings.budget_reconcile_interval_s)
        self.tenant_providers = self._tenant_providers(secrets or SecretsSettings())
        self.agents = AgentExecutor(
            resources.sessions,
            resources.state.settings,
            self.tools,
            self.journal,
            self.llm,
            self.llm.prices,
            LoopLimits(
                max_schema_retries=self.settings.agent_schema_retries,
                max_observation_chars=self.settings.agent_observation_chars,
                tool_timeout_s=self.settings.agent_tool_timeout_s,
                max_tokens_per_turn=self.settings.agent_max_tokens_per_turn,
            ),
            gate=gate,
            objects=resources.objects,
            claim_check_bytes=self.settings.claim_check_bytes,
            ledger=self.budgets,
            tenant_providers=self.tenant_providers,
            pii_detectors=load_detectors(self.settings.pii_detectors),
        )
        self.executors = executors or ExecutorRegistry(
            {
                "tool": ToolExecutor(self.tools, self.journal, gate, self.agents.run_policies),
                "agent": self.agents,
            }
        )
        self._handler = TaskHandler(resources, self.settings, self.executors)
        self._consumer: Consumer | None = None
        self._control: Listener | None = None

    def _tenant_providers(self, secrets: SecretsSettings) -> TenantProviders | None:
        """Tenants' own provider keys need the master key that sealed them; without one,
        agents use the deployment's providers only."""
        cipher = EnvelopeCipher(secrets)
        if not cipher.configured or not isinstance(self.llm, ProviderRegistry):
            return None
        return TenantProviders(
            self.llm,
            self.resources.sessions,
            cipher,
            ttl_s=self.settings.provider_key_cache_s,
        )

    async def handle(self, env: Envelope[Any]) -> None:
        """Handle one `task.ready` envelope (what the consumer calls; tests may call it)."""
        await self._handler.handle(env)

    async def start(self) -> None:
        if self._consumer is not None:
            return
        await self._handler.presence.ensure_started()  # beating before the first claim
        # Listening before consuming: a stop broadcast while the first tasks start is heard.
        if self._control is None and self.settings.stop_broadcast:
            control = self.resources.bus.listener(
                [Topic.RUN_CONTROL],
                self._handler.on_control,
                f"worker-control:{self.settings.worker_id}",
            )
            await control.start()
            self._control = control
        consumer = self.resources.bus.consumer(
            [Topic.TASK_READY],
            self.settings.consumer_group,
            self.handle,
            ConsumerOptions(
                concurrency=self.settings.concurrency,
                # A run's few tasks share a key (one worker fetches them together); only a
                # task's own attempts need their order.
                order_header="ce_taskid",
                retry=_HANDLER_RETRY,
                shutdown_grace_s=self.settings.shutdown_grace_s,
                is_outage=is_outage,
            ),
        )
        await consumer.start()
        self._consumer = consumer
        self._reconciler.start()
        log.info(
            "worker %s consuming %s (group %s, concurrency %d, kinds %s, tools %s)",
            self.settings.worker_id,
            self.resources.registry.name(Topic.TASK_READY),
            self.settings.consumer_group,
            self.settings.concurrency,
            sorted(self.executors.kinds()),
            sorted(self.tools.names()),
        )

    async def stop(self) -> None:
        """Let running tasks finish (up to `shutdown_grace_s`, then cancel them: their
        messages are redelivered), flush timeline events, close tool clients."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
        if self._control is not None:  # after the consumer: its grace still hears stops
            control, self._control = self._control, None
            await control.stop()
        await self._reconciler.stop()
        await self._handler.presence.stop()
        await self._handler.reporter.drain()
        await self.tools.aclose()
        await self.agents.aclose()
        await self.llm.aclose()

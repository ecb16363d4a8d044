"""Applies the state machine to one run inside one transaction.

A ``Transition`` loads only the rows a rule needs (the task that changed, its dependants and
their prerequisites), applies each ``Outcome`` through ``store`` and runs the follow-up
steps until none are left. It stages every event in the outbox of the caller's
transaction; the caller commits, then does the after-commit work listed in ``Effects``.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
from cadenza_events import (
    Envelope,
    RunEvent,
    RunEventBatch,
    RunStopped,
    TaskReady,
    Topic,
    TopicRegistry,
)
from cadenza_events.tracing import inject
from cadenza_state import (
    STOPPED_RUN_STATUSES,
    TERMINAL_RUN_STATUSES,
    ObjectNotFound,
    ObjectStore,
    RunStatus,
    StagedMessage,
    utcnow,
)
from cadenza_workflow import build_context
from sqlalchemy.ext.asyncio import AsyncSession

from . import machine, store
from .graph import RunGraph, task_id_for
from .memory import RunState, counts
from .outcome import (
    HELD,
    OPEN,
    TERMINAL,
    Advance,
    Cached,
    Dispatch,
    Event,
    Failed,
    FanIn,
    FinishRun,
    InstanceFinished,
    Outcome,
    Recover,
    Settled,
    Start,
    Step,
    TaskUpdate,
)
from .rows import RunRow, TaskRow
from .settings import OrchestratorSettings
from .writes import BatchWrites

_DISPATCH_COLUMNS = frozenset(
    {"status", "attempt", "ready_at", "input", "worker_id", "heartbeat_at", "started_at"}
    | {"finished_at", "error", "updated_at"}
)
"""What a dispatch sets on a task row (plus ``cache_key`` when the dispatch has one)."""

TIMELINE_CHUNK = 250
"""Most run events in one `run.events` record (~250 bytes each: well under 1 MB)."""


@dataclass
class Effects:
    """What a transition did, for the work that must wait for the commit."""

    run_id: str
    tenant_id: str
    run_status: str
    tasks_added: int = 0
    tasks_done: int = 0
    dispatched: Counter[str] = field(default_factory=Counter)
    """Dispatches by reason (``first``, or why a task was dispatched again)."""
    finished: Counter[str] = field(default_factory=Counter)
    """Tasks that reached a terminal status, by status."""
    reused: Counter[str] = field(default_factory=Counter)
    """Tasks completed from a recorded output (rerun / fork), by source."""
    run_finished: bool = False
    held: Counter[str] = field(default_factory=Counter)
    """Tool calls held for a person, by kind (approval, in_doubt)."""
    events: int = 0
    grouped: int = 0
    """task.ready sent to the run's partition together (``_group_small_dispatch``)."""
    final_counts: tuple[int, int] | None = None
    """``(total, finished)`` task rows of a run that finished, counted before the commit."""
    outbox: list[StagedMessage] = field(default_factory=list)
    """The outbox rows staged; published by the committing process right after commit."""


def _json_size(value: Any) -> tuple[int, bytes]:
    try:
        data = orjson.dumps(value)
    except TypeError:  # beyond orjson (integers over 64 bits): the standard library
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return len(data), data


class Transition:
    """One transaction's worth of state-machine work on one locked run."""

    def __init__(
        self,
        session: AsyncSession,
        run: RunRow,
        graph: RunGraph | None,
        *,
        objects: ObjectStore,
        registry: TopicRegistry,
        settings: OrchestratorSettings,
        publisher: str | None = None,
        now: datetime | None = None,
        known: RunState | None = None,
    ) -> None:
        """``publisher``: the id of the process that publishes the staged events right after
        the commit (``OutboxRelay.publisher_id``); None leaves them to the relay.

        ``known``: the whole run as this process last wrote it (``memory.RunState``, whose
        ``run`` is ``run``): rows are taken from it instead of the database, and the run's
        end is judged from it. The caller's write must then hold only while the run's
        version is the one ``known`` has (an unlocked batch's guard)."""
        self.session = session
        self.publisher = publisher
        self.run = run
        self._graph = graph
        self.objects = objects
        self.registry = registry
        self.settings = settings
        self.now = now or utcnow()
        self.known = known
        self.diverged = False
        """A statement of this transition changed rows in the database that it does not
        hold (a bulk cancel): ``known`` no longer matches the database after its write."""
        self.nodes: dict[str, TaskRow] = {}
        self.tasks: dict[str, TaskRow] = {}
        self.effects = Effects(run.id, run.tenant_id, run.status)
        self._queue: deque[Step] = deque()
        self._outputs: dict[str, Any] = {}
        self._staged: list[tuple[Topic, Envelope[Any]]] = []
        self._tool_readies: list[int] = []
        """Where in ``_staged`` this transition's tool tasks' task.ready are."""
        self._timeline: list[RunEvent] = []
        # Only a spec task's own row finishing can finish the run (a fan-out instance
        # finishing cannot while its task's row is open), so only then is the run checked.
        self._node_finished = False
        # Task rows created by this transition and not yet inserted (see ``_insert_new``),
        # and the columns it set on rows already in the database (see ``write_changes``):
        # the orchestrator is the only writer of task rows, so this is all that changed.
        self._new: list[TaskRow] = []
        self._attempts: list[dict[str, Any]] = []
        """Attempt rows the orchestrator writes itself (fan-ins, lost dispatches), for close()."""
        self._new_ids: set[str] = set()
        self._changed: dict[str, set[str]] = {}

    @property
    def graph(self) -> RunGraph:
        """The run's graph (absent only for a run rejected before planning)."""
        assert self._graph is not None, "transition without a graph"
        return self._graph

    # -- driving --------------------------------------------------------------------------

    def adopt(self, rows: Iterable[TaskRow]) -> list[TaskRow]:
        """Rows loaded from the database, each replaced by the one this transition already
        holds (which may carry changes not yet written); the others become held."""
        adopted = []
        for row in rows:
            held = self.tasks.get(row.id)
            if held is None:
                self.track(row)
                held = row
            adopted.append(held)
        return adopted

    def record_attempt(self, attempt: dict[str, Any]) -> None:
        """An attempt row to write with this transition's other writes (a result whose
        attempt an earlier event of the same batch dispatched)."""
        self._attempts.append(attempt)

    def track(self, *rows: TaskRow) -> None:
        """Make rows the caller loaded known to the transition."""
        for row in rows:
            self.tasks[row.id] = row
            if row.item_index is None:
                self.nodes[row.node_id] = row

    async def execute(self, outcome: Outcome) -> Effects:
        """Apply ``outcome``, run every follow-up step, close the run when nothing is left,
        and stage the events. The caller commits."""
        await self.run_outcome(outcome)
        return await self.close()

    async def run_outcome(self, outcome: Outcome) -> None:
        """Apply ``outcome`` and every follow-up step it causes (one event of a batch)."""
        await self.apply(outcome)
        # A paused run goes on too: only the tasks a budget held wait for the resume.
        while self._queue and self.run.status in machine.ACTIVE_RUN:
            await self._step(self._queue.popleft())

    async def _insert_new(self) -> None:
        """Insert the task rows this transition created, in ONE Core executemany. Called
        before any statement that needs them (an attempt's foreign key, a bulk update), so
        the database never misses a row a statement depends on. Queries need not wait:
        loads overlay the rows the transition holds (``load_tasks``)."""
        if not self._new:
            return
        rows, self._new = self._new, []
        self._new_ids.clear()
        await store.insert_tasks(self.session, rows)

    def _set(self, row: TaskRow, columns: Iterable[str]) -> None:
        """Record that the transition set these columns of ``row`` (a row not yet inserted
        carries them in its INSERT)."""
        row.updated_at = self.now
        if row.id in self._new_ids:
            return
        changed = self._changed.setdefault(row.id, {"updated_at"})
        changed.update(columns)

    async def write_changes(self) -> None:
        """Bring the database in step with the rows: new rows inserted, changed columns
        written (one executemany per column set). Before any statement that reads or
        bulk-updates task rows in the database, and at the end."""
        await self._insert_new()
        if self._changed:
            changed, self._changed = self._changed, {}
            await store.update_tasks(self.session, changed, self.tasks)

    def _cancelled(self, task_ids: Iterable[str]) -> None:
        """Rows a bulk UPDATE cancelled in the database: the ones held here follow."""
        for task_id in task_ids:
            row = self.tasks.get(task_id)
            if row is not None:
                row.status, row.finished_at, row.updated_at = "cancelled", self.now, self.now

    async def close(self, writes: BatchWrites | None = None) -> Effects:
        """After the batch's outcomes: close the run when nothing is left, and stage the
        events (the task.ready records, and the run's timeline events as ONE record).

        The rows and events left to write go to ``writes``, which the caller flushes once
        for every run of its batch (``BatchWrites``); without it, they are written now."""
        if (
            self.run.status == RunStatus.RUNNING
            and self._node_finished
            and not self._holds_open()
            # The rows held here are all closed; the database answers for the others.
            and not await self._others_open()
        ):
            await self._step(FinishRun())
        if self.effects.run_finished and self.known is not None and not self.diverged:
            # Known whole: the final counts need no query after the write.
            self.effects.final_counts = counts({**self.known.rows, **self.tasks}.values())
        self._stage_timeline()
        batch = writes if writes is not None else BatchWrites()
        new, self._new = self._new, []
        self._new_ids.clear()
        changed, self._changed = self._changed, {}
        attempts, self._attempts = self._attempts, []
        self._group_small_dispatch()
        staged, self._staged = self._staged, []
        self.effects.events += len(staged)
        self.effects.run_status = self.run.status
        batch.add(
            self.effects,
            new=new,
            changed=changed,
            rows=self.tasks,
            attempts=attempts,
            staged=staged,
            run=self.run,
        )
        if writes is None:
            await batch.flush(self.session, self.registry, publisher=self.publisher)
        return self.effects

    async def _others_open(self) -> bool:
        """Whether a row this transition does not hold has work ahead or waits for a
        person (its held rows are judged by ``_holds_open``)."""
        if self.known is not None and not self.diverged:
            return any(tid not in self.tasks for tid in self.known.waiting)
        return await store.has_open_tasks(self.session, self.run.id, besides=self._changed.keys())

    def _holds_open(self) -> bool:
        """Whether a row this transition holds has work ahead or waits for a person: then
        the run cannot be finished and the database need not be asked (a chain's step that
        dispatched the next task asks nothing; only a run's last moments do)."""
        return any(row.status in OPEN or row.status in HELD for row in self.tasks.values())

    async def _step(self, step: Step) -> None:
        g = self.graph
        if isinstance(step, Advance):
            rows = await self._load_nodes([step.node_id, *g.prerequisites(step.node_id)])
            outcome = machine.advance(g.node(step.node_id), rows[step.node_id], rows, g)
        elif isinstance(step, Start):
            row = self.nodes[step.node_id]
            if row.status != "pending":
                return
            try:
                context = await self.context(g.reads(step.node_id))
            except ObjectNotFound as exc:  # a claim-checked output vanished: retrying won't help
                error = machine.error_dict(exc.code, f"task '{step.node_id}': {exc}")
                outcome = machine.fail_task(step.node_id, row, error)
            else:
                cached = await self._cached(step.node_id)
                outcome = machine.start(
                    g.node(step.node_id), row, context, g, self.now, cached=cached
                )
        elif isinstance(step, Settled):
            node = g.node(step.node_id)
            rows = await self._load_nodes([step.node_id, *node.triggers])
            outcome = machine.settled(node, rows[step.node_id], rows)
        elif isinstance(step, Failed):
            node = g.node(step.node_id)
            ids = [step.node_id] + ([node.spec.on_failure] if node.spec.on_failure else [])
            rows = await self._load_nodes(ids)
            fallback = rows.get(node.spec.on_failure) if node.spec.on_failure else None
            outcome = machine.failed(node, rows[step.node_id], fallback)
        elif isinstance(step, InstanceFinished):
            instance = self.tasks[step.task_id]
            aggregate = (await self._load_nodes([instance.node_id]))[instance.node_id]
            outcome = machine.instance_finished(instance.node_id, aggregate, instance)
        elif isinstance(step, FanIn):
            aggregate = (await self._load_nodes([step.node_id]))[step.node_id]
            # The instances this transition holds (changed, perhaps not yet written) win
            # over the database's copies.
            instances = self.adopt(await self._instances(step.node_id))
            missing = [
                r for r in self._new if r.node_id == step.node_id and r.item_index is not None
            ]
            if missing:  # created by this very transition: not in the database yet
                held = {r.id for r in instances}
                instances += [r for r in missing if r.id not in held]
                instances.sort(key=lambda r: r.item_index or 0)
            outputs = [
                await self.output_of(r) if r.status == "succeeded" else None for r in instances
            ]
            statuses = [r.status for r in instances]
            outcome = machine.fan_in(step.node_id, aggregate, outputs, statuses)
        elif isinstance(step, Recover):
            triggers = g.node(step.node_id).triggers
            rows = await self._load_nodes([step.node_id, *triggers])
            outcome = machine.recover(
                step.node_id, rows[step.node_id], [(t, rows[t]) for t in triggers]
            )
        else:  # FinishRun
            try:
                outcome = machine.finish_run(g, await self.context(g.output_tasks()))
            except ObjectNotFound as exc:
                outcome = machine.fail_run(machine.error_dict(exc.code, f"run output: {exc}"))
        await self.apply(outcome)

    # -- loading --------------------------------------------------------------------------

    async def _cached(self, node_id: str) -> Cached | None:
        """The recorded output a rerun or fork may complete this task from: one replaced by
        hand, or the parent run's output of the same task (it succeeded); the rule decides
        by cache key whether it is still valid."""
        replay = self.graph.replay
        if node_id in replay.outputs:
            return Cached("override", output=replay.outputs[node_id])
        if replay.parent_run_id is None or node_id not in replay.reuse:
            return None
        parent_task = task_id_for(replay.parent_run_id, node_id)
        parent = (await store.load_tasks(self.session, replay.parent_run_id, [parent_task])).get(
            parent_task
        )
        if parent is None or parent.status != "succeeded":
            return None
        return Cached(
            "parent",
            task_id=parent.id,
            output=parent.output,
            output_ref=parent.output_ref,
            cache_key=replay.reuse[node_id],
        )

    async def _instances(self, node_id: str) -> list[TaskRow]:
        """A fan-out task's instance rows, in index order, as the database has them."""
        if self.known is None:
            return await store.load_instances(self.session, self.run.id, node_id)
        rows = [
            r for r in self.known.rows.values() if r.node_id == node_id and r.item_index is not None
        ]
        return sorted(rows, key=lambda r: r.item_index or 0)

    async def load_tasks(self, task_ids: Iterable[str]) -> dict[str, TaskRow]:
        """The run's task rows by id: those the transition holds, the rest loaded (rows it
        does not hold are unchanged since the batch began: the database has them right)."""
        wanted = set(task_ids)
        missing = wanted - self.tasks.keys()
        if missing and self.known is not None:
            rows = self.known.rows
            self.track(*(rows[tid] for tid in missing if tid in rows))
        elif missing:
            self.track(*(await store.load_tasks(self.session, self.run.id, missing)).values())
        return {tid: self.tasks[tid] for tid in wanted if tid in self.tasks}

    async def _load_nodes(self, node_ids: Iterable[str]) -> dict[str, TaskRow]:
        wanted = set(node_ids)
        missing = wanted - self.nodes.keys()
        if missing and self.known is not None:
            rows = self.known.rows
            ids = (task_id_for(self.run.id, nid) for nid in missing)
            self.track(*(rows[tid] for tid in ids if tid in rows))
        elif missing:
            self.track(*await store.load_nodes(self.session, self.run.id, missing))
        return {nid: self.nodes[nid] for nid in wanted if nid in self.nodes}

    load_nodes = _load_nodes

    async def output_of(self, row: TaskRow) -> Any:
        """A task's output, read back from the object store when it was claim-checked."""
        if row.output_ref is None:
            return row.output
        if row.output_ref not in self._outputs:
            self._outputs[row.output_ref] = json.loads(await self.objects.get(row.output_ref))
        return self._outputs[row.output_ref]

    async def context(self, reads: Iterable[str]) -> dict[str, Any]:
        """The expression context with just the results these expressions read. Reads are
        finished ancestors, except for a fallback recovering a task that other tasks naming
        it wait for: those appear with their current status (e.g. ``pending``)."""
        rows = await self._load_nodes(reads)
        tasks = {
            nid: {"output": await self.output_of(row), "status": row.status, "error": row.error}
            for nid, row in rows.items()
        }
        return build_context(inputs=self.graph.inputs, tasks=tasks, run_id=self.run.id)

    # -- applying -------------------------------------------------------------------------

    async def apply(self, outcome: Outcome) -> None:
        for new in outcome.new_tasks:
            # Every column set (NULL unless given): the row is detached after its insert,
            # and a column left unset would then be an expired attribute.
            row = TaskRow(
                id=new.task_id,
                run_id=self.run.id,
                node_id=new.node_id,
                item_index=new.item_index,
                status=new.status,
                attempt=0,
                max_attempts=new.max_attempts,
                input=new.input,
                finished_at=self.now if new.status in TERMINAL else None,
                updated_at=self.now,
            )
            # Inserted by ``_insert_new`` in one Core statement, with whatever the
            # transition made of it by then (a plan's roots and a fan-out's instances are
            # inserted already dispatched).
            self._new.append(row)
            self._new_ids.add(row.id)
            self.track(row)
            self.effects.tasks_added += 1
            if new.status in TERMINAL:
                self._finished(new.status, node=new.item_index is None)
        for update in outcome.updates:
            await self._update(update)
        for dispatch in outcome.dispatches:
            await self._dispatch(dispatch)
        if outcome.attempts or outcome.cancel_instances:
            await self._insert_new()
        # Written with the batch's other attempts in one statement at close(): nothing in
        # a transition reads task_attempts back.
        self._attempts.extend(
            {
                "task_id": attempt.task_id,
                "attempt": attempt.attempt,
                "status": attempt.status,
                "started_at": attempt.started_at,
                "finished_at": self.now,
                "error": attempt.error,
            }
            for attempt in outcome.attempts
        )
        for held in outcome.holds:
            await store.insert_hold(
                self.session,
                held,
                tenant_id=self.run.tenant_id,
                run_id=self.run.id,
                now=self.now,
            )
            self.effects.held[held.hold.kind] += 1
        for cancel in outcome.cancel_instances:
            await self.write_changes()
            ids = await store.cancel_open_tasks(
                self.session, self.run.id, now=self.now, node_id=cancel.node_id
            )
            self.diverged = True
            self._cancelled(ids)
            self._finished("cancelled", len(ids), node=False)
        for event in outcome.events:
            if event.kind == "task.reused":
                self.effects.reused[str(event.data.get("source"))] += 1
            self.stage_run_event(event)
        if outcome.run is not None:
            await self._change_run(outcome.run.status, outcome.run.output, outcome.run.error)
        self._queue.extend(outcome.steps)

    async def _update(self, update: TaskUpdate) -> None:
        row = self.tasks[update.task_id]
        values = dict(update.values)
        if values.get("output") is not None:
            size, data = _json_size(values["output"])
            if size > self.settings.claim_check_bytes:
                key = machine.output_key(self.run.id, row.id)
                await self.objects.put(key, data, "application/json")
                self._outputs[key] = values["output"]
                values["output"], values["output_ref"] = None, key
        status = values.get("status")
        if status in TERMINAL and row.status not in TERMINAL:
            values.setdefault("finished_at", self.now)
            self._finished(status, node=row.item_index is None)
        for name, value in values.items():
            setattr(row, name, value)
        self._set(row, values)

    async def _dispatch(self, d: Dispatch) -> None:
        row = self.tasks[d.task_id]
        spec = self.graph.node(d.node_id).spec
        params, params_ref = d.params, d.params_ref
        name = spec.tool or spec.agent or ""
        handoff = (params or {}).get("handoff")
        if spec.kind == "agent" and isinstance(handoff, dict) and handoff.get("agent"):
            name = self._pinned_agent(str(handoff["agent"]))  # handed over: it runs the task
        if params is not None:
            size, raw = _json_size(params)
            if size > self.settings.claim_check_bytes:
                params_ref = machine.params_key(self.run.id, row.id)
                await self.objects.put(params_ref, raw, "application/json")
                params = None
        row.status = "ready"
        row.attempt = d.attempt
        if d.cache_key is not None:
            row.cache_key = d.cache_key
        row.ready_at = self.now
        row.input = params
        row.worker_id = None
        row.heartbeat_at = None
        row.started_at = None
        row.finished_at = None
        row.error = None
        self._set(
            row, _DISPATCH_COLUMNS if d.cache_key is None else {*_DISPATCH_COLUMNS, "cache_key"}
        )
        ready = TaskReady(
            run_id=self.run.id,
            task_id=row.id,
            node_id=d.node_id,
            attempt=d.attempt,
            kind=spec.kind,
            name=name,
            params=params,
            params_ref=params_ref,
            timeout_s=spec.timeout_s,
            max_attempts=spec.retry.max_attempts,
            initial_backoff_s=spec.retry.initial_backoff_s,
            max_backoff_s=spec.retry.max_backoff_s,
            backoff_multiplier=spec.retry.multiplier,
            jitter=spec.retry.jitter,
            ready_at=self.now,
            agent_overrides=self._agent_overrides(d, spec.kind),
            approval=spec.approval.model_dump(mode="json", exclude_none=True)
            if spec.approval
            else {},
        )
        # Stamped now, inside the span of the event that caused it (the batch stages it
        # later): each task's trace runs through the result that released it.
        if spec.kind == "tool":
            self._tool_readies.append(len(self._staged))
        self._staged.append((Topic.TASK_READY, inject(self._envelope(ready, row.id, d.attempt))))
        data: dict[str, Any] = {"attempt": d.attempt}
        if d.reason != "first":
            data["reason"] = d.reason
        if row.item_index is not None:
            data["item_index"] = row.item_index
        self.stage_run_event(Event("task.ready", row.id, d.node_id, "ready", data))
        self.effects.dispatched[d.reason] += 1

    def _group_small_dispatch(self) -> None:
        """A few tool tasks made ready together go to ONE partition (their run's key), so one
        worker fetches them in one request, runs them side by side and reports them in one
        produce, and their results come back to this process in one batch: spread one key
        per task, a run of 10 cost every process a fetch and a produce more per worker it
        reached. A wider dispatch (a fan-out) and agent tasks (slow, each worth a worker of
        its own) keep one key per task and spread over every partition."""
        ready, self._tool_readies = self._tool_readies, []
        if not ready or len(ready) > self.settings.dispatch_group_max:
            return
        for i in ready:
            topic, env = self._staged[i]
            self._staged[i] = (topic, replace(env, partition_key=self.run.id))
        self.effects.grouped += len(ready)

    def _agent_overrides(self, d: Dispatch, kind: str) -> dict[str, Any] | None:
        """A fork's agent overrides of this task, on every dispatch (a re-dispatch too),
        except to an agent it was handed off to (they were for the original agent)."""
        if kind != "agent" or d.reason == "handoff":
            return None
        if d.overrides is not None:
            return d.overrides
        override = self.graph.replay.overrides.get(d.node_id)
        return dict(override) if override else None

    def _pinned_agent(self, name: str) -> str:
        """``name@version`` as the gateway pinned it for this run (``spec.agents``)."""
        if "@" in name:
            return name
        version = self.graph.spec.agents.get(name)
        return f"{name}@{version}" if version is not None else name

    async def _change_run(self, status: str, output: Any, error: dict[str, Any] | None) -> None:
        self.run.status = status
        if status in TERMINAL_RUN_STATUSES:
            self.run.finished_at = self.now
            self.run.output = output
            self.run.error = error
            self.effects.run_finished = True
        elif status == RunStatus.PAUSED or self.run.error is not None:
            self.run.error = error  # a pause names the budget; a resume clears it
        if status in STOPPED_RUN_STATUSES:
            # Every worker process stops the run's tasks in flight as this is published
            # (``run.control`` is broadcast); the Redis marker set after the commit is the
            # durable record that claims and heartbeats read.
            stop = RunStopped(run_id=self.run.id, status=status)
            self._staged.append((Topic.RUN_CONTROL, inject(self._envelope(stop, None, None))))
            await self.write_changes()
            ids = await store.cancel_open_tasks(self.session, self.run.id, now=self.now)
            self.diverged = True
            self._cancelled(ids)
            self._finished("cancelled", len(ids), node=False)
            await store.cancel_pending_holds(self.session, self.run.id, now=self.now)

    def _finished(self, status: str, count: int = 1, *, node: bool) -> None:
        if count:
            self._node_finished = self._node_finished or node
            self.effects.tasks_done += count
            self.effects.finished[status] += count

    # -- events ---------------------------------------------------------------------------

    def _envelope(self, payload: Any, task_id: str | None, attempt: int | None) -> Envelope[Any]:
        return Envelope(
            payload=payload,
            source=self.settings.source,
            tenant_id=self.run.tenant_id,
            plan_id=self.run.id,
            task_id=task_id,
            attempt=attempt,
            subject=task_id or self.run.id,
            time=self.now,  # the transition's time: its events share it (and its text)
        )

    def add_run_events(self, events: Iterable[RunEvent]) -> None:
        """Run events another process reported (a worker's, carried in its result): they
        join this transition's timeline record as they are."""
        self._timeline.extend(events)

    def stage_run_event(self, event: Event) -> None:
        self._timeline.append(
            RunEvent(
                run_id=self.run.id,
                kind=event.kind,
                task_id=event.task_id,
                node_id=event.node_id,
                status=event.status,
                data=event.data,
                at=self.now,
            )
        )

    def _stage_timeline(self) -> None:
        """The transition's run events as few `run.events` records: up to
        ``TIMELINE_CHUNK`` events per record, so a fan-out of 500 adds one record to the bus,
        not 500, and a fan-out of 10,000 stays far below Kafka's 1 MB message limit (a lone
        event travels as itself)."""
        events, self._timeline = self._timeline, []
        for start in range(0, len(events), TIMELINE_CHUNK):
            chunk = events[start : start + TIMELINE_CHUNK]
            if len(chunk) == 1:
                event = chunk[0]
                attempt = event.data.get("attempt") if event.task_id else None
                env = self._envelope(event, event.task_id, attempt)
            else:
                env = self._envelope(RunEventBatch(run_id=self.run.id, events=chunk), None, None)
            self._staged.append((Topic.RUN_EVENTS, env))

"""Consumers' handlers: ``plan.requested`` expands a run, ``run.cancel_requested`` (on the
same topic) cancels it, ``run.resume_requested`` resumes a run a budget paused,
``task.result`` moves it on.

The consumer hands over one partition's fetch at a time, and its statements do not grow
with the number of runs in it. A batch of plans or of results is applied without a lock
(``_apply_unlocked``): its runs and rows read on their own, everything written as ONE
statement guarded on the runs' versions — a stale owner's write fails whole; the runs this
process planned, or read whole on their first results batch here (after a restart or a
rebalance), are held whole in memory (``memory.RunMemory``), and their batches read
nothing. Any other batch, or one whose guard failed, is ONE transaction: the batch's run
rows locked in one statement (the lock also fences a stale owner during a rebalance), the
attempts of all its results recorded in one bulk insert, each run's events applied in
order, and what the runs' transitions left to write written together (``BatchWrites``: one
statement per kind). After the commit this process publishes the outbox rows the batch
wrote (the relay only recovers what a crash left), updates the Redis hot status once per
run and counts metrics, while the consumer's next batch is applied (``consume_batch``; the
commits' after-commit work runs one after another, in commit order). A results or plans
batch applied without a lock hands its ``task.ready`` to the producer as its statement
leaves, before the commit (early dispatch, docs/orchestrator.md); this process's writers
of a run take turns (``turns.RunTurns``), and a result that comes before its run's plan
waits for it (``plan_waits``). Handlers are idempotent: a redelivered event finds the run
no longer ``pending`` or the attempt already recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from cadenza_events import (
    SENT_BEFORE_COMMIT_HEADER,
    Envelope,
    HoldResolved,
    PlanRequested,
    RawRecord,
    RunCancelRequested,
    RunResumeRequested,
    TaskResult,
    Topic,
)
from cadenza_events.tracing import context_of, continued
from cadenza_runtime import Resources, labelled
from cadenza_runtime.staging import OutboxRow
from cadenza_state import (
    STOPPED_RUN_STATUSES,
    TERMINAL_RUN_STATUSES,
    RunStatus,
    StagedMessage,
    direct,
)
from cadenza_workflow import ExpressionError, SpecValidationError
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from . import hot_status, machine, metrics, store
from .engine import Effects, Transition
from .graph import GraphCache, RunGraph, task_id_for
from .memory import RunMemory, RunState
from .plan_waits import PlanWaits, ResultsBeforePlan
from .rows import RunRow, TaskRow
from .settings import OrchestratorSettings
from .turns import RunTurns
from .writes import BatchWrites, EarlySend

log = logging.getLogger("cadenza.orchestrator")
tracer = trace.get_tracer("cadenza.orchestrator")


@dataclass(frozen=True)
class Applied:
    """One run's share of a committed batch."""

    effects: Effects
    planned: bool
    transition: Transition | None = None
    """The transition that made it (for ``RunMemory``: what it held is the run now)."""


@dataclass
class RecordedResults:
    """The batch's results after their attempts were recorded: their task rows as loaded
    before the batch, and why each result that is not applied was ignored."""

    rows: dict[str, TaskRow]
    ignored: dict[tuple[str, int], str] = field(default_factory=dict)
    """Why a result is not applied, by ``(run_id, its position in the run's events)``: the
    same event may come twice in one batch, and only its first delivery applies."""
    ahead: dict[str, set[str]] = field(default_factory=dict)
    """By run: ids of the node rows its results' next steps read (loaded with ``rows``)."""
    later: dict[tuple[str, int], str] = field(default_factory=dict)
    """Results whose attempt the rows before the batch do not know, behind an earlier result
    of their run in the same batch: that result's transition may dispatch the attempt
    (``_results`` decides at their turn; the value is the reason if it does not). Only a
    ``task.ready`` sent before its batch committed (``early dispatch``), then applied again
    after an orchestrator's crash or a rebalance, has its result fetched with its cause."""
    recorded_later: set[tuple[str, int]] = field(default_factory=set)
    """``(task_id, attempt)`` of the ``later`` results applied (a second delivery is not)."""

    def rows_ahead(self, run_id: str) -> list[TaskRow]:
        return [self.rows[i] for i in self.ahead.get(run_id, ()) if i in self.rows]


@dataclass(eq=False)
class AfterCommit:
    """One commit's after-commit work (``RunHandlers._chain``) and how far it got."""

    appended: asyncio.Event
    """Its records are in the producer's queue (or their send was given up)."""
    hot_written: asyncio.Event
    """Its hot statuses are written (or given up)."""
    task: asyncio.Task[Any] = field(init=False)


class RunHandlers:
    """The orchestrator's event handlers and the after-commit work they share."""

    def __init__(
        self, resources: Resources, settings: OrchestratorSettings, graphs: GraphCache
    ) -> None:
        self.resources = resources
        self.settings = settings
        self.graphs = graphs
        self.memory = RunMemory(
            settings.run_memory_rows if settings.unlocked_batches else 0, max_runs=graphs.size
        )
        """Whole runs this process planned or rebuilt: their results batches read nothing."""
        self.turns = RunTurns()
        """This process's writers of a run take turns: its batches and the sweeper."""
        self.plan_waits = PlanWaits(settings.result_plan_wait_s)
        """Results batches whose runs' plans are not applied yet wait for them."""
        self.hot_writes = hot_status.HotStatusWrites(resources.hot, settings.status_linger_s)
        """The runs' hot statuses of successive commits, gathered into one Redis pipeline."""
        self._revoked: set[tuple[str, int]] = set()
        """Partitions revoked since the last assignment (``revoked``, ``assigned``)."""
        self._after: AfterCommit | None = None
        """The after-commit work of the last commit (``_chain``): running, or done."""
        self._afters: set[asyncio.Task[Any]] = set()
        """Every commit's after-commit work still running."""
        self.holds: Callable[[str], bool | None] = lambda run_id: None
        """Whether this process holds a run's partition now (the consumer's assignment and
        partitioner; None: not known). Set by the orchestrator once it consumes."""

    def revoked(self, partitions: set[tuple[str, int]]) -> None:
        """A rebalance took partitions from this process (Kafka's assignors are eager: all
        of them, before assigning them again). Which runs held in memory stay is decided
        by the assignment that follows (``assigned``). Even a run kept wrongly would be
        safe: the guard of its next write fails, and its batch is applied the locked way."""
        self._revoked |= partitions

    def assigned(self, partitions: set[tuple[str, int]]) -> None:
        """The rebalance's assignment: when partitions went elsewhere, forget the runs whose
        partition is not held any more; keep those of the partitions assigned straight back,
        so their next batches read nothing (``_rebuild`` reads a forgotten one whole on its
        next batch)."""
        lost, self._revoked = self._revoked - partitions, set()
        held = len(self.memory)
        forgotten = self.memory.keep_where(self.holds) if lost else 0
        if held:
            log.info(
                "rebalance: %d partition(s) went elsewhere; kept %d run(s) held, forgot %d",
                len(lost),
                held - forgotten,
                forgotten,
            )
            for outcome, n in (("kept", held - forgotten), ("forgotten", forgotten)):
                if n:
                    metrics.RUN_MEMORY_REBALANCED.labels(outcome).inc(n)
        metrics.RUN_MEMORY_ROWS.set(self.memory.rows)

    async def handle(self, env: Envelope[Any]) -> None:
        """One event (tests, tools): a batch of one."""
        await self.handle_batch([env])

    async def handle_batch(self, envs: Sequence[Envelope[Any]]) -> None:
        """One partition's fetch, applied, committed, published and its hot statuses set
        (tests, tools, benches: what they read next is all there)."""
        await self._apply_and_commit(envs)
        await self.settle()

    async def consume_batch(self, envs: Sequence[Envelope[Any]]) -> None:
        """The consumer's entry point: what one fetch brought for one partition.

        Returns once the batch is committed and the batches before it have published and
        set their hot statuses; this batch's own after-commit work (``_after_commit``) goes
        on meanwhile. A topic's batches run one at a time (``batches_in_flight``), so its next
        batch applies and writes while this one waits for Kafka's acknowledgement and
        Redis's reply, instead of after them. Safe to return before the publish: the outbox
        rows are committed (a send that fails hands them to the relay), and the
        after-commit work of every batch runs in commit order (``_chain``)."""
        mine = await self._apply_and_commit(envs)
        # Bounded: only this batch's work is left running (the others' end in commit order
        # when their acks do; one broker's acks come in order, several brokers' may not).
        others = [task for task in self._afters if mine is None or task is not mine.task]
        if others:
            await asyncio.wait(others)

    async def settle(self, timeout_s: float | None = None) -> None:
        """Wait until every committed batch has published and set its hot statuses, those
        lingering included (a graceful stop, tests). Past ``timeout_s`` (Kafka or Redis
        hung) the work left is cancelled: its rows stay in the outbox for the relay."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while unfinished := [task for task in self._afters if not task.done()]:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                log.warning(
                    "after-commit work of %d commit(s) unfinished after %.1f s: cancelled, "
                    "their rows are left to the relay",
                    len(unfinished),
                    timeout_s,
                )
                for task in unfinished:
                    task.cancel()
                await asyncio.wait(unfinished)
                return
            await asyncio.wait(unfinished, timeout=left)
        # The hot statuses still lingering: sent now (what was just read is all there).
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            async with asyncio.timeout(left):
                await self.hot_writes.flush()
        except TimeoutError:
            log.warning("the last hot statuses were not sent within %.1f s", timeout_s)

    async def _apply_and_commit(self, envs: Sequence[Envelope[Any]]) -> AfterCommit | None:
        """Apply and commit one batch (without a lock when it can, ``_unlocked``; else ONE
        transaction for the whole batch: each run's events applied in order on its row,
        locked once), then chain its after-commit work. Returns that work (None: this batch
        had nothing to apply)."""
        by_run: dict[str, list[Envelope[Any]]] = {}
        for env in envs:
            payload = env.payload
            if isinstance(
                payload,
                (PlanRequested, RunCancelRequested, RunResumeRequested, TaskResult, HoldResolved),
            ):
                by_run.setdefault(payload.run_id, []).append(env)
            else:
                log.warning("ignoring unexpected event %s (%s)", env.type, env.id)
        if not by_run:
            return None
        # This process's other writers of these runs (the other consumer, the sweeper) wait:
        # a batch's guard then fails only because of another process (turns.py).
        while True:
            async with self.turns.hold(by_run, "batch"):
                outcome = await self._apply_held(envs, by_run)
            if isinstance(outcome, ResultsBeforePlan):
                # A plan's task.ready sent before a commit that never came (plan_waits.py).
                log.info("%s: waiting for their plan, then applying the batch again", outcome)
                await self.plan_waits.wait()
                continue
            if any(isinstance(env.payload, PlanRequested) for env in envs):
                self.plan_waits.applied(by_run)
            return outcome

    async def _apply_held(
        self, envs: Sequence[Envelope[Any]], by_run: dict[str, list[Envelope[Any]]]
    ) -> AfterCommit | ResultsBeforePlan:
        """``_apply_and_commit`` once the batch's runs are its to write. Nothing written
        when results came before their plan (``ResultsBeforePlan``, returned)."""
        started = time.perf_counter()
        with tracer.start_as_current_span(
            "orchestrator.batch",
            attributes={"cadenza.events": len(envs), "cadenza.runs": len(by_run)},
        ) as span:
            writes = BatchWrites()
            applied: list[Applied | None] | None = None
            try:
                if self._unlocked(envs):
                    applied = await self._apply_unlocked(by_run, writes)
                    span.set_attribute("cadenza.batch.unlocked", applied is not None)
                if applied is None:
                    writes = BatchWrites()
                    self.memory.forget(by_run)  # the locked way reads them from the database
                    async with self.resources.sessions() as session, session.begin():
                        applied = await self._apply_batch(session, by_run, writes)
                        committing = time.perf_counter()
                    writes.write_seconds += time.perf_counter() - committing
                    # And again: a results batch of another partition (a command's run is on
                    # plan.requested, its results on task.result) may have read one whole
                    # meanwhile; what this batch wrote is not in it.
                    self.memory.forget(by_run)
            except ResultsBeforePlan as before:
                span.set_attribute("cadenza.batch.results_before_plan", len(before.run_ids))
                return before
            elapsed = time.perf_counter() - started
            metrics.BATCH_SECONDS.observe(elapsed)
            metrics.BATCH_EVENTS.observe(len(envs))
            per_event = elapsed / len(envs)  # the batch's cost, shared by its events
            for env in envs:
                labelled(metrics.TRANSITION_SECONDS, _kind(env)).observe(per_event)
            # A batch applied again locked counts its failed first try in apply.
            for phase, seconds in (
                ("apply", elapsed - writes.write_seconds),
                ("write", writes.write_seconds),
            ):
                _PHASES[phase].observe(seconds)
                span.set_attribute(f"cadenza.batch.{phase}_ms", round(seconds * 1000, 3))
            if writes.early is not None:
                span.set_attribute("cadenza.batch.early_records", writes.early.records)
            # Started inside the batch's span: the after-commit span is its child.
            mine = self._chain(
                writes.outbox,
                [a for a in applied if a is not None],
                phases=True,
                early=writes.early,
            )
        return mine

    def _chain(
        self,
        outbox: Sequence[StagedMessage],
        applied: Sequence[Applied],
        *,
        phases: bool,
        early: EarlySend | None = None,
    ) -> AfterCommit:
        """Start the after-commit work of a commit, in turn with the previous commit's: its
        records are handed to the producer once the previous commit's are (so they are
        sent in commit order, without waiting for the previous acknowledgements), and its
        hot statuses are written once the previous commit's are. ``early``: the commit's
        task.ready records already sent (``_send_early``). Returns this one's."""
        previous = self._after
        mine = AfterCommit(appended=asyncio.Event(), hot_written=asyncio.Event())
        mine.task = asyncio.create_task(
            self._after_commit(previous, mine, outbox, applied, phases=phases, early=early),
            name="orchestrator-after-commit",
        )
        self._add(mine)
        return mine

    def _add(self, mine: AfterCommit) -> None:
        """``mine`` is the last of the chain now."""
        self._after = mine
        self._afters.add(mine.task)
        mine.task.add_done_callback(self._afters.discard)

    def _early(
        self, by_run: dict[str, list[Envelope[Any]]], writes: BatchWrites
    ) -> Callable[[Sequence[OutboxRow]], None] | None:
        """The hook (``BatchWrites.flush``'s ``encoded``) that sends a results or plans
        batch's task.ready records as its guarded statement leaves (``early_dispatch``), or
        None."""
        kinds = {type(env.payload) for items in by_run.values() for env in items}
        if not self.settings.early_dispatch or not (
            kinds <= {TaskResult} or kinds <= {PlanRequested}
        ):
            return None
        topic = self.resources.registry.name(Topic.TASK_READY)

        def send(rows: Sequence[OutboxRow]) -> None:
            # Marked: a worker makes no side effect for it before it sees the commit.
            records: list[RawRecord] = [
                (
                    name,
                    key.encode() if key is not None else None,
                    payload,
                    [*headers, SENT_BEFORE_COMMIT_HEADER],
                )
                for name, key, headers, payload in rows
                if name == topic
            ]
            if records:
                sent = self._send_early(topic, records)
                if writes.early is None:
                    writes.early = sent
                else:  # a later slice of the batch's records (writes.encode_in_slices)
                    writes.early.join(sent)

        return send

    def _send_early(self, topic: str, records: list[RawRecord]) -> EarlySend:
        """Hand a batch's task.ready records to the producer before its statement's reply, in
        turn with the commits before (the chain). Why that is safe: docs/orchestrator.md,
        Early dispatch. The commit's after-commit work then only deletes their rows (or, if
        this send failed, hands them to the relay)."""
        previous = self._after
        if previous is not None:
            hot_written = previous.hot_written  # nothing of its own to write: passes it on
        else:
            hot_written = asyncio.Event()
            hot_written.set()
        mine = AfterCommit(appended=asyncio.Event(), hot_written=hot_written)
        mine.task = asyncio.create_task(
            self._publish_early(previous, mine, records), name="orchestrator-early-dispatch"
        )
        self._add(mine)
        return EarlySend(topic, len(records), [mine.task])

    async def _publish_early(
        self, previous: AfterCommit | None, mine: AfterCommit, records: list[RawRecord]
    ) -> bool:
        """True once every record is acknowledged; False if the send failed (logged)."""
        try:
            if previous is not None:
                await previous.appended.wait()
            await self.resources.publisher.publish_raw_many(records, appended=mine.appended.set)
            return True
        except Exception:
            log.warning(
                "early dispatch of %d task.ready failed: the commit hands them to the relay",
                len(records),
                exc_info=True,
            )
            return False
        finally:
            mine.appended.set()

    async def _after_commit(
        self,
        previous: AfterCommit | None,
        mine: AfterCommit,
        outbox: Sequence[StagedMessage],
        applied: Sequence[Applied],
        *,
        phases: bool,
        early: EarlySend | None = None,
    ) -> None:
        """A commit's work that follows it: publish the outbox rows it wrote (the relay only
        recovers what a crash left) and, meanwhile, the runs' hot statuses in one Redis
        round trip. Never raises: a failed send hands the rows to the relay, a failed hot
        status is logged (the database holds the truth). ``early``: its task.ready rows
        were sent before the commit: only their delete is left (or the relay, if that send
        failed)."""
        committed = time.perf_counter()
        sent_early: list[StagedMessage] = []
        if early is not None:
            sent_early = [r for r in outbox if r.topic == early.topic]
            outbox = [r for r in outbox if r.topic != early.topic]
        hot: asyncio.Task[float] | None = None
        try:
            if previous is not None:
                await previous.appended.wait()
            with tracer.start_as_current_span(
                "orchestrator.after_commit",
                attributes={"cadenza.outbox_rows": len(outbox), "cadenza.runs": len(applied)},
            ) as span:
                queued = time.perf_counter()
                # The hot statuses go to Redis while the records wait for Kafka's acks. The
                # publish starts first: its task.ready are appended before this task yields.
                hot = asyncio.create_task(self._hot_in_turn(previous, mine, applied))
                previous = None  # held by nothing once both have started
                try:
                    await self.resources.relay.publish_committed(outbox, appended=mine.appended)
                    if early is not None:
                        await self.resources.relay.published_early(
                            sent_early, sent=await early.sent()
                        )
                except Exception:
                    log.exception("publishing the commit of %d run(s) failed", len(applied))
                published = time.perf_counter()
                try:
                    hot_seconds = await hot
                except Exception:
                    log.exception("hot status of %d run(s) failed", len(applied))
                    return
                if phases:
                    for phase, seconds in (
                        ("queued", queued - committed),
                        ("publish", published - queued),
                        ("hot_status", hot_seconds),
                    ):
                        _PHASES[phase].observe(seconds)
                        span.set_attribute(f"cadenza.batch.{phase}_ms", round(seconds * 1000, 3))
        finally:  # cancelled (a stop past its grace): the next commits go on
            mine.appended.set()
            if hot is None or hot.cancel():
                mine.hot_written.set()

    async def _hot_in_turn(
        self, previous: AfterCommit | None, mine: AfterCommit, applied: Sequence[Applied]
    ) -> float:
        """The runs' hot statuses, written after the previous commit's; the seconds the
        write took."""
        try:
            if previous is not None:
                await previous.hot_written.wait()
            started = time.perf_counter()
            await self.after_commit_batch(applied)  # logs its own failure
            return time.perf_counter() - started
        finally:
            mine.hot_written.set()

    def _unlocked(self, envs: Sequence[Envelope[Any]]) -> bool:
        """Whether this batch is applied without a transaction of its own: only plan.requested
        or only task.result in it (commands go the locked way), on PostgreSQL, when
        enabled."""
        if not (
            self.settings.unlocked_batches
            and self.resources.state.engine.dialect.name == "postgresql"
        ):
            return False
        kinds = {type(env.payload) for env in envs}
        return kinds <= {PlanRequested} or kinds <= {TaskResult}

    async def _apply_unlocked(
        self, by_run: dict[str, list[Envelope[Any]]], writes: BatchWrites
    ) -> list[Applied | None] | None:
        """Apply a batch of plans or of results with no transaction of its own: the runs read
        with no lock (``store.read_runs``), the results' task rows and recorded attempts in
        ONE read — nothing read for a run held whole in memory (``_known``) —, each run's
        events applied as ``_apply_batch`` would, and everything — the results' attempts
        too — written as ONE statement that holds only while no run's ``version`` moved
        since it was read (``BatchWrites.flush``'s ``unlocked``). A plan makes two round
        trips where the locked way makes four (BEGIN, the lock, the writes, COMMIT), a
        result three where it made six (one for a run in memory), and a dispatch waits for
        one of them. A step that reads inside a transition (a rerun's outputs, "is any task
        open?" of a run read from the database) begins a transaction as before; the
        guarded statement then joins it.

        Why no lock is needed: only the orchestrator writes a run's state, every such write
        moves the run's version on (``store.update_runs``), and a partition's batches are
        applied one after the other. What is left — a command applied meanwhile, the
        sweeper, a second orchestrator during a rebalance — makes the guard (or a task row's
        primary key) fail the statement, and PostgreSQL undoes all of it. Then None: the
        caller applies the batch again the locked way, which sees what happened."""
        known = self._known(by_run)
        try:
            return await self._apply_guarded(by_run, known, writes)
        except BaseException:
            _count_early(writes, "failed")
            self.memory.forget(by_run)  # their rows may be half-changed: the database decides
            raise

    def _known(self, by_run: dict[str, list[Envelope[Any]]]) -> dict[str, RunState]:
        """The batch's runs held whole in memory (with their graph: nothing to read)."""
        known: dict[str, RunState] = {}
        for run_id in by_run:
            state = self.memory.get(run_id)
            if state is not None and self.graphs.get(run_id) is not None:
                known[run_id] = state
            elif state is not None:  # its graph went out of the cache: read it all again
                self.memory.forget([run_id])
        if known:
            metrics.RUN_MEMORY.labels("hit").inc(len(known))
        return known

    async def _rebuild(
        self,
        session: AsyncSession,
        runs: dict[str, RunRow],
        missed: dict[str, list[Envelope[Any]]],
    ) -> dict[str, RunState]:
        """Read whole, in ONE statement, the runs of a results batch that memory does not
        hold but has room for (planned by another orchestrator, or before this one
        started), and hold them: their later batches read nothing. Their rows were read
        after their run rows, so the batch's guard covers this read as any other."""
        graphs: dict[str, RunGraph] = {}
        for run_id, items in missed.items():
            run = runs.get(run_id)
            if (
                run is None
                or run.status in TERMINAL_RUN_STATUSES
                or not isinstance(items[0].payload, TaskResult)
                or not self.memory.may_fill(run_id)
            ):
                continue
            graph = self.graphs.get(run_id)
            if graph is None:
                try:
                    graph = self.graphs.put(RunGraph.for_run(run))
                except (SpecValidationError, ExpressionError):
                    continue  # the transition reports it, from the database
            graphs[run_id] = graph
        if not graphs:
            return {}
        rebuilt: dict[str, RunState] = {}
        for run_id, (rows, attempts) in (await store.read_whole_runs(session, graphs)).items():
            state = RunState(runs[run_id], rows, attempts)
            if self.memory.fill(state):
                rebuilt[run_id] = state
        return rebuilt

    async def _apply_guarded(
        self,
        by_run: dict[str, list[Envelope[Any]]],
        known: dict[str, RunState],
        writes: BatchWrites,
    ) -> list[Applied | None] | None:
        async with self.resources.sessions() as session:
            carried = self._carried(by_run, known)
            unknown = {r: e for r, e in by_run.items() if r not in known and r not in carried}
            runs = {run_id: state.run for run_id, state in known.items()} | carried
            if carried:
                metrics.RUN_MEMORY.labels("carried").inc(len(carried))
            if unknown:
                runs |= await store.read_runs(session, unknown, with_spec=self._needs_spec(unknown))
                rebuilt = await self._rebuild(session, runs, unknown)
                known |= rebuilt
                trace.get_current_span().set_attribute("cadenza.batch.runs_rebuilt", len(rebuilt))
                for outcome, n in (
                    ("rebuilt", len(rebuilt)),
                    ("miss", len(unknown) - len(rebuilt)),
                ):
                    if n:
                        metrics.RUN_MEMORY.labels(outcome).inc(n)
            trace.get_current_span().set_attribute("cadenza.batch.runs_in_memory", len(known))
            recorded = await self._record_results(
                session, runs, by_run, deferred=writes, known=known
            )
            applied = [
                await self._apply_run(session, runs.get(run_id), items, recorded, writes)
                for run_id, items in by_run.items()
            ]
            for run_id, a in zip(by_run, applied, strict=True):
                if a is None and run_id in known:
                    # Its results were all ignored on what memory says: the guard must
                    # still prove memory right (the sweeper may have dispatched again).
                    writes.runs.append(known[run_id].run)
            recorded_attempts = [(a["task_id"], a["attempt"]) for a in writes.attempts]
            try:
                await writes.flush(
                    session,
                    self.resources.registry,
                    publisher=self.resources.relay.publisher_id,
                    unlocked=True,
                    encoded=self._early(by_run, writes),
                )
                committing = time.perf_counter()
                await session.commit()  # nothing to commit unless a step began a transaction
                writes.write_seconds += time.perf_counter() - committing
            except (direct.GuardFailed, IntegrityError) as exc:
                _count_early(writes, "applied_again")
                await session.rollback()
                reason = "changed" if isinstance(exc, direct.GuardFailed) else "conflict"
                event = _kind(next(iter(by_run.values()))[0])
                metrics.BATCHES_LOCKED_AGAIN.labels(event, reason).inc()
                log.info(
                    "applying %s of %d run(s) again, locked (%s): %s",
                    event,
                    len(by_run),
                    reason,
                    exc,
                )
                self.memory.forget(by_run)
                return None
        _count_early(writes, "committed")
        self._remember(by_run, known, applied, recorded_attempts)
        return applied

    def _remember(
        self,
        by_run: dict[str, list[Envelope[Any]]],
        known: dict[str, RunState],
        applied: list[Applied | None],
        attempts: list[tuple[str, int]],
    ) -> None:
        """After a guarded write held: a run known whole is now what its transition held
        (and the attempts recorded); a run planned here enters whole; a run that finished,
        or whose transition changed rows it did not hold, is forgotten."""
        for run_id, a in zip(by_run, applied, strict=True):
            state = known.get(run_id)
            transition = a.transition if a is not None else None
            if a is None or transition is None:
                if state is not None:  # nothing of it written but its results' attempts
                    self.memory.absorb(state, (), attempts)
            elif a.effects.run_finished or transition.diverged:
                self.memory.forget([run_id])
            elif state is not None:
                self.memory.absorb(state, transition.tasks.values(), attempts)
            elif a.planned and self.memory.max_rows:
                self.memory.put(RunState(transition.run, dict(transition.tasks)))
            else:  # written from what the batch read: memory, if any, is behind
                self.memory.forget([run_id])
        metrics.RUN_MEMORY_ROWS.set(self.memory.rows)

    @staticmethod
    def _carried(
        by_run: dict[str, list[Envelope[Any]]], known: dict[str, RunState]
    ) -> dict[str, RunRow]:
        """The new runs whose plan carries their whole row (``PlanRequested.row_version``):
        nothing to read. Each is the row as the gateway wrote it; if it is not that any
        more (the plan was applied already, or a cancel came first), the version differs,
        the guarded write fails and the batch is applied again the locked way."""
        carried: dict[str, RunRow] = {}
        for run_id, items in by_run.items():
            plan = items[0].payload
            if (
                run_id in known
                or len(items) != 1
                or not isinstance(plan, PlanRequested)
                or plan.row_version is None
                or plan.workflow_name is None
            ):
                continue
            carried[run_id] = RunRow(
                id=run_id,
                tenant_id=items[0].tenant_id,
                workflow_name=plan.workflow_name,
                status=RunStatus.PENDING.value,
                budget=plan.budget,
                version=plan.row_version,
                spec=plan.spec,
                inputs=plan.inputs,
            )
        return carried

    def _needs_spec(self, by_run: dict[str, list[Envelope[Any]]]) -> list[str]:
        """The runs whose spec is read with their row: those whose graph this process does
        not hold, and those being planned."""
        return [
            run_id
            for run_id, items in by_run.items()
            if self.graphs.get(run_id) is None
            or any(isinstance(e.payload, PlanRequested) for e in items)
        ]

    async def _apply_batch(
        self, session: AsyncSession, by_run: dict[str, list[Envelope[Any]]], writes: BatchWrites
    ) -> list[Applied | None]:
        """ONE statement for each of: the runs' locks, their results' task rows, the
        results' attempt rows, and (``writes.flush``) each kind of write — whatever the
        number of runs in the batch."""
        # No ORM on this path: the run rows are plain RunRows, and what the batch changed
        # on them is written by ``writes.flush`` with the batch's other writes (one
        # statement per set of changed columns). No statement of a batch reads the runs
        # table after the lock.
        runs = await store.lock_runs(session, by_run, with_spec=self._needs_spec(by_run))
        recorded = await self._record_results(session, runs, by_run)
        applied = [
            await self._apply_run(session, runs.get(run_id), items, recorded, writes)
            for run_id, items in by_run.items()
        ]
        await writes.flush(
            session, self.resources.registry, publisher=self.resources.relay.publisher_id
        )
        return applied

    async def _record_results(
        self,
        session: AsyncSession,
        runs: dict[str, RunRow],
        by_run: dict[str, list[Envelope[Any]]],
        *,
        deferred: BatchWrites | None = None,
        known: dict[str, RunState] | None = None,
    ) -> RecordedResults:
        """Record the attempt of every result of the batch once, in ONE bulk insert (after
        loading their task rows in one query): a result whose task or attempt is unknown,
        or whose attempt was recorded before, is not applied. An attempt a result names was
        dispatched by an earlier, committed batch, so the rows as they were before this
        batch decide.

        ``deferred`` (a batch applied without a lock): the rows come with the attempts
        recorded for them in ONE read, and the new attempts are inserted with the batch's
        other writes — its guard stands for the lock (another writer of these attempts
        moved the run's version on). ``known``: runs held whole in memory, whose rows and
        recorded attempts are read from there."""
        results = [
            ((run_id, position), env)
            for run_id, items in by_run.items()
            if run_id in runs
            for position, env in enumerate(items)
            if isinstance(env.payload, TaskResult)
        ]
        if not results:
            return RecordedResults({})
        ahead = self._rows_ahead(results)
        rows: dict[str, TaskRow] = {}
        before: set[tuple[str, int]] = set()
        ids: set[str] = set()
        for (run_id, _), env in results:
            state = known.get(run_id) if known else None
            wanted = {env.payload.task_id, *ahead.get(run_id, ())}
            if state is None:
                ids |= wanted
                continue
            rows |= {i: state.rows[i] for i in wanted if i in state.rows}
            key = (env.payload.task_id, env.payload.attempt)
            if key in state.attempts:
                before.add(key)
        if ids and deferred is None:
            rows |= await store.load_tasks_by_id(session, ids)
        elif ids:
            read, recorded_before = await store.read_tasks_with_attempts(session, ids)
            rows |= read
            before |= recorded_before
        recorded = RecordedResults(rows, ahead=ahead)
        fresh: list[tuple[TaskResult, TaskRow]] = []
        seen: set[tuple[str, int]] = set()
        first_result: dict[str, int] = {}
        for (run_id, position), _ in results:
            first_result.setdefault(run_id, position)
        before_plan: set[str] = set()
        for at, env in results:
            result: TaskResult = env.payload
            row = rows.get(result.task_id)
            key = (result.task_id, result.attempt)
            unknown = None
            if row is None and self._before_plan(runs[result.run_id]):
                before_plan.add(result.run_id)
                continue
            if row is None or row.run_id != result.run_id:
                unknown = "unknown_task"
            elif not 1 <= result.attempt <= row.attempt:
                unknown = "unknown_attempt"  # never dispatched: no record
            if unknown is not None:
                run_id, position = at
                if position > first_result[run_id] and result.attempt >= 1:
                    recorded.later[at] = unknown  # an earlier result may dispatch it
                else:
                    recorded.ignored[at] = unknown
            elif key in seen or key in before:
                recorded.ignored[at] = "duplicate"
            elif row is not None:
                seen.add(key)
                fresh.append((result, row))
        if before_plan:
            raise ResultsBeforePlan(before_plan)
        attempts = [_attempt_record(result, row) for result, row in fresh]
        if deferred is not None:
            deferred.attempts.extend(attempts)
            return recorded
        inserted = await store.insert_attempts(session, attempts)
        for at, env in results:
            key = (env.payload.task_id, env.payload.attempt)
            if at not in recorded.ignored and at not in recorded.later and key not in inserted:
                recorded.ignored[at] = "duplicate"  # recorded by an earlier batch
        return recorded

    def _before_plan(self, run: RunRow) -> bool:
        """Whether a result that found no task row came before its run's plan was applied
        (the plan's task.ready sent early, its orchestrator then gone: plan_waits.py), and
        its batch is to wait for that plan."""
        return run.status == RunStatus.PENDING.value and self.plan_waits.waits(run.id)

    def _rows_ahead(
        self, results: list[tuple[tuple[str, int], Envelope[Any]]]
    ) -> dict[str, set[str]]:
        """The node rows the results' next steps will read, to load with the results' own
        rows in ONE query (a chain's step made two): for a spec task's result, each
        dependant and that dependant's prerequisites (what ``Advance`` reads); for a fan-out
        instance's, its fan-out row. Only for runs whose graph this process holds; a row
        not asked for here is loaded when a step wants it, as before."""
        ahead: dict[str, set[str]] = {}
        for (run_id, _), env in results:
            graph = self.graphs.get(run_id)
            task_id: str = env.payload.task_id
            prefix = f"{run_id}."  # task ids are task_id_for(run, node[, index])
            if graph is None or not task_id.startswith(prefix):
                continue
            node_id = task_id[len(prefix) :]
            node = graph.nodes.get(node_id)
            wanted = ahead.setdefault(run_id, set())
            if node is not None:
                for dependant in node.dependants:
                    for nid in (dependant, *graph.prerequisites(dependant)):
                        wanted.add(task_id_for(run_id, nid))
            elif (parent := node_id.rpartition(".")[0]) in graph.nodes:
                wanted.add(task_id_for(run_id, parent))
        return ahead

    async def _apply_run(
        self,
        session: AsyncSession,
        run: RunRow | None,
        items: list[Envelope[Any]],
        recorded: RecordedResults,
        writes: BatchWrites,
    ) -> Applied | None:
        """Apply one run's events of the batch, in order, on its row (locked)."""
        if run is None:
            for env in items:
                self._ignored(env, "unknown_run")
            return None
        transition: Transition | None = None
        planned = False
        results: list[tuple[int, Envelope[Any]]] = []
        for position, env in enumerate(items):
            if isinstance(env.payload, TaskResult):
                results.append((position, env))
                continue
            if results:  # the results that came before this command apply first, in order
                transition = await self._results(session, run, transition, results, recorded)
                results = []
            if isinstance(env.payload, RunCancelRequested):
                transition = await self._cancel(session, run, transition, env)
                continue
            if isinstance(env.payload, HoldResolved):
                transition = await self._answers(session, run, transition, [env])
                continue
            if isinstance(env.payload, RunResumeRequested):
                transition = await self._resume(session, run, transition, env)
                continue
            if run.status != RunStatus.PENDING:  # a redelivered plan.requested
                self._ignored(env, "duplicate")
                continue
            with self._item_span("orchestrator.plan", env):
                plan_started = time.perf_counter()
                transition = await self._plan(session, run)
                metrics.PLAN_SECONDS.observe(time.perf_counter() - plan_started)
                planned = True
        if results:
            transition = await self._results(session, run, transition, results, recorded)
        if transition is None:
            return None
        effects = await transition.close(writes)
        return Applied(effects, planned, transition)

    # -- plan.requested -------------------------------------------------------------------

    async def _plan(self, session: AsyncSession, run: RunRow) -> Transition:
        try:
            graph = self.graphs.put(RunGraph.for_run(run))
        except (SpecValidationError, ExpressionError) as exc:
            # A run whose stored spec does not validate fails without a plan.
            transition = self._transition(session, run, None)
            await transition.run_outcome(machine.reject_plan(exc.to_dict()))
            return transition
        transition = self._transition(session, run, graph)
        await transition.run_outcome(machine.plan(graph))
        return transition

    # -- run.cancel_requested -------------------------------------------------------------

    async def _cancel(
        self,
        session: AsyncSession,
        run: RunRow,
        transition: Transition | None,
        env: Envelope[RunCancelRequested],
    ) -> Transition | None:
        """Cancel a run that has not finished. A cancel of a finished run changes nothing,
        but one of a cancelled run sets the workers' stop marker again: a retried cancel
        repairs a marker Redis lost (an outage here pauses the batch until Redis is back)."""
        if run.status in TERMINAL_RUN_STATUSES:
            metrics.CANCELS.labels("run_finished").inc()
            self._ignored(env, "run_finished")
            if run.status == RunStatus.CANCELLED:
                hot, ttl = self.resources.hot, self.settings.status_ttl_s
                async with hot.redis.pipeline(transaction=False) as pipe:
                    hot_status.mark_cancelled(hot, pipe, run.id, ttl_s=ttl)
                    await pipe.execute()
            return transition
        with self._item_span("orchestrator.cancel", env):
            if transition is None:
                transition = self._transition(session, run, self.graphs.get(run.id))
            command = env.payload
            await transition.run_outcome(
                machine.cancel_run(requested_by=command.requested_by, reason=command.reason)
            )
        metrics.CANCELS.labels("applied").inc()
        return transition

    # -- run.resume_requested -------------------------------------------------------------

    async def _resume(
        self,
        session: AsyncSession,
        run: RunRow,
        transition: Transition | None,
        env: Envelope[RunResumeRequested],
    ) -> Transition | None:
        """Resume a run a budget paused: raise its own limit if the command says so and
        dispatch every held task again. Anything but a paused run ignores it (a redelivery
        of an applied resume finds the run running)."""
        if run.status != RunStatus.PAUSED:
            metrics.RESUMES.labels("not_paused").inc()
            self._ignored(env, "not_paused")
            return transition
        command = env.payload
        with self._item_span("orchestrator.resume", env):
            transition = self._joined(transition, session, run)
            # Written first, so the database knows every task held so far in this batch.
            await transition.write_changes()
            paused = transition.adopt(await store.load_paused(session, run.id))
            if command.budget:
                run.budget = machine.raised_budget(run.budget, command.budget)
            await transition.run_outcome(
                machine.resume_run(
                    paused,
                    requested_by=command.requested_by,
                    reason=command.reason,
                    budget=command.budget,
                )
            )
        metrics.RESUMES.labels("applied").inc()
        return transition

    # -- task.result ----------------------------------------------------------------------

    async def _results(
        self,
        session: AsyncSession,
        run: RunRow,
        transition: Transition | None,
        envs: list[tuple[int, Envelope[Any]]],
        recorded: RecordedResults,
    ) -> Transition | None:
        """Apply, in order, the results whose attempt the batch recorded now (see
        ``_record_results``). Returns the transition, if any result applied."""
        ignored = {p: recorded.ignored.get((run.id, p)) for p, _ in envs}
        later = {p: recorded.later.get((run.id, p)) for p, _ in envs}
        loaded = [
            recorded.rows[e.payload.task_id]
            for p, e in envs
            if ignored[p] is None and later[p] is None
        ]
        # Once the batch has a transition of this run, the rows it holds win (an earlier
        # event of the batch may have changed them).
        held = transition.adopt(loaded) if transition is not None else loaded
        rows = {row.id: row for row in held}
        ahead = recorded.rows_ahead(run.id)

        def joined(transition: Transition | None) -> Transition:
            nonlocal ahead
            transition = self._joined(transition, session, run)
            if ahead:  # known to the transition, which then need not load them again
                transition.adopt(ahead)
                ahead = []
            return transition

        for position, env in envs:
            result: TaskResult = env.payload
            reason = ignored[position]
            if reason is not None:
                self._ignored(env, reason)
                continue
            if (unknown := later[position]) is not None:
                dispatched = self._dispatched_here(transition, result, recorded)
                if dispatched is None:
                    self._ignored(env, unknown)
                    continue
                rows[result.task_id] = dispatched
            row = rows[result.task_id]
            if result.events:  # the worker's timeline of this attempt, first, in its order
                transition = joined(transition)
                transition.add_run_events(result.events)
            reason = machine.ignore_reason(run.status, row, result)
            if reason is not None:
                self._ignored(env, reason)  # the attempt stays recorded (history)
                continue
            if result.started_at is not None and result.attempt == row.attempt:
                latency = (
                    (result.started_at - row.ready_at).total_seconds() if row.ready_at else None
                )
                if latency is not None:
                    metrics.DISPATCH_LATENCY.observe(max(0.0, latency))
            transition = joined(transition)
            transition.track(row)
            with self._item_span("orchestrator.result", env):
                if run.status == RunStatus.CANCELLED:
                    aggregate = None
                    if row.item_index is not None:
                        nodes = await transition.load_nodes([row.node_id])
                        aggregate = nodes.get(row.node_id)
                    outcome = machine.cancelled_result(row.node_id, row, aggregate)
                else:
                    outcome = machine.apply_result(
                        row.node_id, row, result, max_handoffs=self.settings.max_handoffs
                    )
                    if outcome.run is not None and outcome.run.status == RunStatus.PAUSED:
                        budget = (outcome.run.error or {}).get("budget") or {}
                        metrics.BUDGET_PAUSES.labels(str(budget.get("budget", ""))).inc()
                await transition.run_outcome(outcome)
        return transition

    @staticmethod
    def _dispatched_here(
        transition: Transition | None, result: TaskResult, recorded: RecordedResults
    ) -> TaskRow | None:
        """The row of a result the rows before its batch did not know (``RecordedResults.
        later``) when an earlier result of the batch dispatched its attempt; that attempt
        is then recorded with the transition's writes. None: it was not dispatched here (or
        this is its second delivery in the batch), and the result is ignored."""
        row = transition.tasks.get(result.task_id) if transition is not None else None
        key = (result.task_id, result.attempt)
        if (
            transition is None
            or row is None
            or row.run_id != result.run_id
            or row.attempt != result.attempt
            or key in recorded.recorded_later
        ):
            return None
        recorded.recorded_later.add(key)
        transition.record_attempt(_attempt_record(result, row))
        metrics.RESULTS_BEHIND_DISPATCH.inc()
        return row

    # -- hold.resolved (a person answered a held task) ------------------------------------

    async def _answers(
        self,
        session: AsyncSession,
        run: RunRow,
        transition: Transition | None,
        envs: list[Envelope[Any]],
    ) -> Transition | None:
        """Apply each answer to a held task whose held attempt is still current; anything
        else (a redelivery, a run that ended meanwhile) changes nothing."""
        commands: list[HoldResolved] = [e.payload for e in envs]
        rows = await self._task_rows(session, run, transition, {c.task_id for c in commands})
        for env, command in zip(envs, commands, strict=True):
            row = rows.get(command.task_id)
            reason = (
                "unknown_task"
                if row is None
                else machine.hold_ignore_reason(run.status, row, command)
            )
            if reason is not None or row is None:
                self._ignored(env, reason or "unknown_task")
                continue
            transition = self._joined(transition, session, run)
            transition.track(row)
            with self._item_span("orchestrator.hold_resolved", env):
                await transition.run_outcome(machine.resolve_hold(row.node_id, row, command))
            metrics.HOLDS_RESOLVED.labels(command.kind, command.decision).inc()
        return transition

    def _ignored(self, env: Envelope[Any], reason: str) -> None:
        payload = env.payload
        if isinstance(payload, RunCancelRequested):
            log.info("cancel of run %s ignored: %s", payload.run_id, reason)
        elif isinstance(payload, RunResumeRequested):
            log.info("resume of run %s ignored: %s", payload.run_id, reason)
        elif isinstance(payload, PlanRequested):
            metrics.PLANS_IGNORED.labels(reason).inc()
            log.info("plan.requested for run %s ignored: %s", payload.run_id, reason)
        else:
            metrics.RESULTS_IGNORED.labels(reason).inc()
            log.debug("result %s attempt %s ignored: %s", payload.task_id, payload.attempt, reason)

    @staticmethod
    def _item_span(name: str, env: Envelope[Any]) -> AbstractContextManager[Any]:
        """A span per event of the batch, in that event's own trace (its producer's). In a
        process that records no span, the producer's context itself (``continued``): what
        the item stages carries that trace all the same."""
        fast = continued(env)
        if fast is not None:
            return fast
        payload = env.payload
        attributes: dict[str, AttributeValue] = {"cadenza.run_id": payload.run_id}
        if isinstance(payload, (TaskResult, HoldResolved)):
            attributes |= {
                "cadenza.task_id": payload.task_id,
                "cadenza.attempt": payload.attempt,
                "cadenza.status": payload.status
                if isinstance(payload, TaskResult)
                else payload.decision,
            }
        # Inside a batch of one, the consumer span already continues this event's trace:
        # nest under it. In a larger batch, start from the event's own producer context.
        ctx = context_of(env)
        current = trace.get_current_span().get_span_context()
        if ctx is not None:
            producer = trace.get_current_span(ctx).get_span_context()
            if current.is_valid and current.trace_id == producer.trace_id:
                ctx = None
        return tracer.start_as_current_span(name, context=ctx, attributes=attributes)

    # -- shared ---------------------------------------------------------------------------

    @staticmethod
    async def _task_rows(
        session: AsyncSession, run: RunRow, transition: Transition | None, ids: set[str]
    ) -> dict[str, TaskRow]:
        """Task rows by id; once the batch has a transition of this run, the rows it holds
        (an earlier event of the batch may have changed them)."""
        if transition is not None:
            return await transition.load_tasks(ids)
        return await store.load_tasks(session, run.id, ids)

    def _joined(
        self, transition: Transition | None, session: AsyncSession, run: RunRow
    ) -> Transition:
        """The batch's transition of this run, started (graph built and cached) if none yet."""
        if transition is not None:
            return transition
        graph = self.graphs.get(run.id)
        if graph is None:
            graph = self.graphs.put(RunGraph.for_run(run))
        return self._transition(session, run, graph)

    def _transition(self, session: AsyncSession, run: RunRow, graph: RunGraph | None) -> Transition:
        return Transition(
            session,
            run,
            graph,
            objects=self.resources.objects,
            registry=self.resources.registry,
            settings=self.settings,
            publisher=self.resources.relay.publisher_id,
            known=self.memory.holds(run),  # only when the batch took the run from there
        )

    async def after_commit(self, effects: Effects, *, planned: bool = False) -> None:
        """The hot status of one run's transition that the sweeper committed (and
        published), in turn with the batches' (``_chain``): their order is the commits'."""
        mine = self._chain((), [Applied(effects, planned)], phases=False)
        await asyncio.wait({mine.task})

    async def after_commit_batch(self, applied: Sequence[Applied]) -> None:
        """Work that must follow the commit: metrics, and the runs' hot statuses staged for
        ONE Redis round trip, with the next commits' when they linger
        (``HotStatusWrites``). Failures there are logged, never retried (the database
        already holds the truth and a redelivery would be a no-op)."""
        hot, ttl = self.resources.hot, self.settings.status_ttl_s
        pipe = self.hot_writes.pipeline()
        for a in applied:
            effects = a.effects
            self._count(effects)
            if a.planned:  # counted after the commit: a plan undone is planned again
                metrics.RUNS_STARTED.inc()
            if effects.run_status in STOPPED_RUN_STATUSES:
                hot_status.mark_cancelled(hot, pipe, effects.run_id, ttl_s=ttl)
            if effects.run_finished and effects.final_counts is not None:
                total, done = effects.final_counts
                hot_status.set_counts(
                    hot,
                    pipe,
                    effects.run_id,
                    tenant_id=effects.tenant_id,
                    status=effects.run_status,
                    total=total,
                    done=done,
                    ttl_s=ttl,
                )
            elif a.planned:
                hot_status.set_counts(
                    hot,
                    pipe,
                    effects.run_id,
                    tenant_id=effects.tenant_id,
                    status=effects.run_status,
                    total=effects.tasks_added,
                    done=effects.tasks_done,
                    ttl_s=ttl,
                )
            else:
                hot_status.add_counts(
                    hot,
                    pipe,
                    effects.run_id,
                    status=effects.run_status,
                    added=effects.tasks_added,
                    done=effects.tasks_done,
                    ttl_s=ttl,
                )
        await self.hot_writes.staged()  # sent now, or with the next commits' (a linger)

    def _count(self, effects: Effects) -> None:
        metrics.TASKS_DISPATCHED.inc(sum(effects.dispatched.values()))
        if effects.grouped:
            metrics.TASKS_GROUPED.inc(effects.grouped)
        for kind, n in effects.held.items():
            metrics.HOLDS.labels(kind).inc(n)
        for reason, n in effects.dispatched.items():
            if reason != "first":
                metrics.REDISPATCHES.labels(reason).inc(n)
        for status, n in effects.finished.items():
            metrics.TASKS_FINISHED.labels(status).inc(n)
        for source, n in effects.reused.items():
            metrics.TASKS_REUSED.labels(source).inc(n)
        if effects.run_finished:
            metrics.RUNS_FINISHED.labels(effects.run_status).inc()
            self.graphs.forget(effects.run_id)


_PHASES = {
    phase: metrics.BATCH_PHASE_SECONDS.labels(phase)
    for phase in ("apply", "write", "queued", "publish", "hot_status")
}
"""The phase histograms' children, looked up once (``labels`` costs microseconds)."""


def _count_early(writes: BatchWrites, outcome: str) -> None:
    """What became of the statement whose batch sent its task.ready early (once)."""
    early = writes.early
    if early is not None and early.outcome is None:
        early.outcome = outcome
        metrics.EARLY_DISPATCH.labels(outcome).inc(early.records)


def _attempt_record(result: TaskResult, row: TaskRow) -> dict[str, Any]:
    """The attempt row a first-seen result records (``task_attempts``)."""
    return {
        "task_id": row.id,
        "attempt": result.attempt,
        "status": "handed_off" if result.handoff is not None else result.status,
        "worker_id": result.worker_id,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "error": result.error.model_dump() if result.error is not None else None,
    }


def _kind(env: Envelope[Any]) -> str:
    """The transition-seconds label of an event."""
    payload = env.payload
    if isinstance(payload, PlanRequested):
        return "plan.requested"
    if isinstance(payload, RunCancelRequested):
        return "run.cancel_requested"
    if isinstance(payload, HoldResolved):
        return "hold.resolved"
    if isinstance(payload, RunResumeRequested):
        return "run.resume_requested"
    return "task.result"

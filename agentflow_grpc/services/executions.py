"""Executions: the use cases the API and the CLI call, over the parts that do the work.

- `start()` checks everything a run needs before anything is stored (the spec against the
  tenant's sources, the inputs against the spec: a refused run leaves no record) and returns a
  `RecordedRun` for the caller to drive (`ExecuteWorkflow`), leased to this replica and owned
  by a job of the queue (if this server dies, another resumes it).
- `start_background()` records the execution the same way and queues it for a worker on any
  replica (`StartExecution`); `run_job()` runs one a worker of this replica claimed.
- `get()`, `events()`, `list()` read the records; `stream()` follows a run from memory when it
  runs here, else through the log and Redis; `cancel()` stops it wherever it runs.
- `shutdown()` gives the runs going on here a grace period, hands queued ones back and cancels
  the rest.

The parts, each one job, depending one way (top to bottom):

  queued_runs    a claimed job: its lease, its run prepared and driven with a heartbeat,
                 handed over at shutdown, acknowledged; queuing a start (JobDeferred)
  run_preparer   a request or a queued record -> a checked, compiled, recorded run
                 (RunRequest); validations.py remembers the spec validations it does
  live_runs      the runs driven here; following one of them from memory
  heartbeats     a run's lease, its job's claim and cancel requests while it runs here
  remote_runs    following and cancelling a run on another replica
  admission      the server's cap on runs, the tenant's concurrency slot and token quota
  run_records    the executions' records and logs; ending a run that runs nowhere

Redis is reached through `queue/` (whose guard turns its failures into QueueUnavailableError)
and the limiter and caches (which fail open): nothing here imports redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from agentflow_grpc.caching.workflows import WorkflowVersionCache
from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.limits import Limiter
from agentflow_grpc.model.errors import InvalidArgumentError
from agentflow_grpc.model.events import ExecutionEvent
from agentflow_grpc.model.records import Execution, ExecutionStatus, Principal
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.queue.coordination import Coordination
from agentflow_grpc.queue.jobs import Delivery
from agentflow_grpc.services.access import check_visible
from agentflow_grpc.services.admission import Admission
from agentflow_grpc.services.heartbeats import Heartbeats
from agentflow_grpc.services.live_runs import LiveRuns
from agentflow_grpc.services.queued_runs import QueuedRuns
from agentflow_grpc.services.recorded_run import RecordedRun
from agentflow_grpc.services.remote_runs import RemoteRuns
from agentflow_grpc.services.run_preparer import RunPreparer, RunRequest
from agentflow_grpc.services.run_profiles import RunProfile, run_profile
from agentflow_grpc.services.run_records import RunRecords
from agentflow_grpc.services.traces import NodeTrace, build_trace
from agentflow_grpc.sources.registry import SourceRegistry
from agentflow_grpc.spec import Limits, PluginCatalog
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database
from agentflow_grpc.storage.pagination import Page

__all__ = ["ExecutionDetail", "ExecutionService", "RunRequest"]


@dataclass(frozen=True, slots=True)
class ExecutionDetail:
    execution: Execution
    trace: list[NodeTrace]
    profile: RunProfile  # where its time went, as of the read


class ExecutionService:
    def __init__(
        self,
        database: Database,
        engine: ExecutionEngine,
        keyring: Keyring,
        *,
        sources: SourceRegistry,
        plugins: PluginCatalog,
        limits: Limits,
        coordination: Coordination,
        limiter: Limiter,
        versions: WorkflowVersionCache,
        metrics: Metrics,
        max_running: int = 500,
    ) -> None:
        self._coordination = coordination
        self._records = RunRecords(database, metrics)
        self._admission = Admission(limiter, max_running=max_running, metrics=metrics)
        self._live = LiveRuns(self._admission, self._records)
        self._preparer = RunPreparer(
            database,
            engine,
            keyring,
            sources=sources,
            plugins=plugins,
            limits=limits,
            versions=versions,
            fanout=coordination.fanout,
            admission=self._admission,
            records=self._records,
            live=self._live,
            metrics=metrics,
        )
        self._heartbeats = Heartbeats(coordination)
        self._queued = QueuedRuns(
            coordination,
            self._preparer,
            self._admission,
            self._records,
            self._heartbeats,
            metrics,
        )
        self._remote = RemoteRuns(coordination, self._records)

    async def start(
        self, principal: Principal, request: RunRequest, *, keep_running: bool = False
    ) -> RecordedRun:
        """A run for the caller to drive by iterating `events()` (a `request_id` plays no part:
        a repeated streamed run is a new run). A caller that stops reading cancels it, unless
        `keep_running`: then it runs on, followed and cancelled like a background run."""
        self._admission.enter()  # one of this server's run slots, given back as the run ends
        try:
            run = await self._preparer.new_run(
                principal, dataclasses.replace(request, request_id=None)
            )
        except BaseException:
            self._admission.leave()
            raise
        await self._heartbeats.own(run)
        if keep_running:
            run.detach()
        return run

    async def start_background(self, principal: Principal, request: RunRequest) -> Execution:
        """Record a run and queue it for a worker on any replica; return its record at once.
        A `request_id` seen before returns the execution that request started, and starts
        nothing. Redis down: UnavailableError, and nothing is kept."""
        return await self._queued.enqueue(principal, request)

    async def get(self, principal: Principal, execution_id: uuid.UUID) -> ExecutionDetail:
        """The execution with its per-node trace, from the stored events, and its profile."""
        execution, events = await self._records.with_events(principal.tenant_id, execution_id)
        check_visible(principal, execution)
        trace = build_trace(events)
        profile = run_profile(execution, trace, now=datetime.now(UTC))
        return ExecutionDetail(execution, trace, profile)

    async def events(
        self, principal: Principal, execution_id: uuid.UUID, *, after_sequence: int = 0
    ) -> list[ExecutionEvent]:
        """The stored events after `after_sequence`."""
        _check_sequence(after_sequence)
        check_visible(principal, await self._records.get(principal.tenant_id, execution_id))
        return await self._records.events(
            principal.tenant_id, execution_id, after_sequence=after_sequence
        )

    async def stream(
        self, principal: Principal, execution_id: uuid.UUID, *, after_sequence: int = 0
    ) -> AsyncIterator[ExecutionEvent]:
        """The events after `after_sequence`, stored then live, until the terminal one."""
        _check_sequence(after_sequence)
        tenant_id = principal.tenant_id
        last = after_sequence
        check_visible(principal, await self._records.get(tenant_id, execution_id))  # or NotFound
        followed_here = False

        def run_here() -> RecordedRun | None:
            """The run, if this server drives it and it was not followed here yet (a run
            handed over from here is followed elsewhere from then on)."""
            run = self._live.get(execution_id)
            if followed_here or run is None or run.record.tenant_id != tenant_id:
                return None
            return run

        while True:
            run = run_here()
            if run is not None:
                followed_here = True
                async for event in self._live.follow(run, after_sequence=last):
                    yield event
                    last = event.sequence
                    if event.is_terminal:
                        return
            # Not (or no longer) run here: the event log, then the live events of the replica
            # that runs it; unless a worker here takes the run up (it was queued) while the
            # log is read: then from memory rather than through Redis.
            async for event in self._remote.follow(
                tenant_id, execution_id, after_sequence=last, here=lambda: run_here() is not None
            ):
                yield event
                last = event.sequence
                if event.is_terminal:
                    return
            if run_here() is None:
                return

    async def cancel(
        self, principal: Principal, execution_id: uuid.UUID, *, reason: str = ""
    ) -> Execution:
        """Stop a run; it ends with `execution_cancelled`. A run already over is left as it is."""
        reason = reason or f"cancelled by {principal.actor}"
        execution = check_visible(
            principal, await self._records.get(principal.tenant_id, execution_id)
        )
        run = self._live.get(execution_id)
        if run is not None and not execution.status.is_final:
            run.cancel(reason)
            await run.wait()
        elif not execution.status.is_final:
            await self._remote.cancel(execution, reason)
        return await self._records.get(principal.tenant_id, execution_id)

    async def list(
        self,
        principal: Principal,
        *,
        page_size: int = 0,
        page_token: str = "",
        statuses: Collection[ExecutionStatus] = (),
        workflow_id: uuid.UUID | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> Page[Execution]:
        return await self._records.list(
            principal.tenant_id,
            page_size=page_size,
            page_token=page_token,
            statuses=statuses,
            workflow_id=workflow_id,
            created_after=created_after,
            created_before=created_before,
        )

    async def run_job(self, delivery: Delivery) -> None:
        """Run a queued execution here (a worker of this replica claimed it, in a slot it
        reserved), and acknowledge the job once its final event is stored. One taken over from
        a lost worker is resumed; one handed out too often is failed with the reason; one whose
        tenant runs its most at once raises JobDeferred (back in the queue)."""
        await self._queued.run(delivery)

    async def shutdown(self, grace: float) -> None:
        """Give live runs `grace` seconds to finish, then hand queued ones back to the queue
        and cancel the rest (recorded as such)."""
        runs = self._live.all()
        if runs:
            await asyncio.wait([asyncio.ensure_future(run.wait()) for run in runs], timeout=grace)
        for run in self._live.all():
            if not await self._queued.hand_over(run):
                run.cancel("the server is shutting down")
        for run in self._live.all():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run.wait(), timeout=10)
        await self._heartbeats.stopped(timeout=10)
        await self._admission.settled(timeout=10)
        await self._preparer.close()

    # --- for the workers (services/workers.py) ---

    @property
    def coordination(self) -> Coordination:
        """The job queue, leases and fan-out this replica shares with the others."""
        return self._coordination

    def reserve_slot(self) -> bool:
        """Take one of this server's run slots for a job a worker is about to claim (False
        when all are taken: the worker claims nothing). `run_job` uses it, or gives it back
        with `release_slot`."""
        return self._admission.reserve()

    def release_slot(self) -> None:
        self._admission.leave()

    async def on_cancel_request(self, execution_id: uuid.UUID, reason: str) -> None:
        """A replica asks whoever runs `execution_id` to stop it (pub/sub)."""
        self._live.cancel(execution_id, reason)

    def on_watch_request(self, execution_id: uuid.UUID) -> None:
        """A replica asks whoever runs `execution_id` to publish its events (pub/sub)."""
        self._live.watch(execution_id)


def _check_sequence(after_sequence: int) -> None:
    if after_sequence < 0:
        raise InvalidArgumentError("after_sequence must not be negative", field="after_sequence")

"""Executions: run a stored workflow version or an inline spec, recording every event.

`start()` checks everything a run needs before anything is stored (the spec against the
tenant's sources, the inputs against the spec): a refused run leaves no record. It returns a
`RecordedRun` for the caller to drive (`ExecuteWorkflow`); `start_background()` drives it in a
task of its own and returns at once (`StartExecution`). Either way the run is listed in `_live`
while it goes on, so `stream()` can follow it from its first event, and `cancel()` can stop it.
Runs of this process that are not live any more are read from the event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cachetools import LRUCache
from redis.exceptions import RedisError

from agentflow_grpc.caching.workflows import WorkflowVersionCache
from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.limits import ExecutionSlot, Limiter
from agentflow_grpc.model.errors import (
    InvalidArgumentError,
    InvalidSpecError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.records import Execution, ExecutionStatus, Principal, Role
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.queue.fanout import EventFanout, StreamGap
from agentflow_grpc.queue.jobs import Delivery, Job, JobQueue
from agentflow_grpc.queue.runs import RunLeases
from agentflow_grpc.services.access import require
from agentflow_grpc.services.recorded_run import RecordedRun
from agentflow_grpc.services.resumption import ResumedExecution
from agentflow_grpc.services.shared_sources import SharedSources
from agentflow_grpc.services.traces import NodeTrace, build_trace
from agentflow_grpc.sources.registry import SourceRegistry
from agentflow_grpc.spec import Limits, PluginCatalog, ValidationResult, validate_spec
from agentflow_grpc.storage import executions as store
from agentflow_grpc.storage import sources as source_store
from agentflow_grpc.storage import workflows as workflow_store
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database
from agentflow_grpc.storage.pagination import Page

log = get_logger("agentflow.executions")

POLL_INTERVAL = 0.25  # seconds between reads of the log when following a run of another process
CANCEL_WAIT = 15.0  # seconds CancelExecution waits for another replica to stop its run
VALIDATIONS_KEPT = 512  # valid specs whose validation is remembered (by document and sources)


@dataclass(frozen=True, slots=True)
class ExecutionDetail:
    execution: Execution
    trace: list[NodeTrace]


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What to run: a stored workflow (at `version`, or its current one) or an inline spec."""

    inputs: Mapping[str, Any]
    workflow_id: uuid.UUID | None = None
    version: int | None = None
    spec: Any = None
    timeout: float | None = None  # seconds; the engine's execution timeout when None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Coordination:
    """What replicas share through Redis: the job queue, run leases and cancel requests, and
    the fan-out of events to followers on other replicas."""

    queue: JobQueue
    leases: RunLeases
    fanout: EventFanout
    heartbeat: float  # seconds between a runner's lease renewals, job touches, cancel checks
    max_deliveries: int  # a job handed out more often than this is failed, not run again


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
        max_running: int = 500,
        coordination: Coordination | None = None,
        limiter: Limiter | None = None,
        versions: WorkflowVersionCache | None = None,
    ) -> None:
        self._database = database
        self._engine = engine
        self._keyring = keyring
        self._shared_sources = SharedSources(sources)
        self._plugins = plugins
        self._limits = limits
        self._live: dict[uuid.UUID, RecordedRun] = {}
        self._max_running = max_running
        self._admitted = 0  # runs running here, or being prepared to
        self._drivers: set[asyncio.Task[None]] = set()
        self._coordination = coordination
        self._keepers: set[asyncio.Task[None]] = set()
        self._deliveries: dict[uuid.UUID, Delivery] = {}  # queued runs running here
        self._limiter = limiter
        self._versions = versions
        self._validations: LRUCache[tuple[str, tuple[tuple[str, str], ...]], ValidationResult] = (
            LRUCache(maxsize=VALIDATIONS_KEPT)
        )
        self._slots: dict[uuid.UUID, ExecutionSlot] = {}  # the tenant's and key's, per run
        self._settling: set[asyncio.Task[None]] = set()

    @property
    def coordination(self) -> Coordination | None:
        return self._coordination

    def reserve_slot(self) -> bool:
        """Take one of this server's run slots for a job a worker is about to claim (False
        when all are taken: the worker claims nothing). `run_job` uses it, or gives it back
        with `release_slot`."""
        if self._admitted >= self._max_running:
            return False
        self._admitted += 1
        return True

    def release_slot(self) -> None:
        self._admitted -= 1

    async def start(self, principal: Principal, request: RunRequest) -> RecordedRun:
        """A run for the caller to drive by iterating `events()` (a `request_id` plays no part:
        a repeated streamed run is a new run)."""
        require(principal, Role.RUNNER, "running a workflow")
        run = await self._admitted_prepare(principal, dataclasses.replace(request, request_id=None))
        assert run is not None  # without a request_id a run is always new
        if self._coordination is not None:
            with contextlib.suppress(RedisError, OSError):  # Redis down: a local run still runs
                if await self._coordination.leases.acquire(run.id):
                    self._keep(run, delivery=None)
        return run

    async def start_background(self, principal: Principal, request: RunRequest) -> Execution:
        """Start a run driven by this process, and return its record at once. A `request_id`
        seen before returns the execution that request started, and starts nothing."""
        require(principal, Role.RUNNER, "running a workflow")
        if self._coordination is not None:
            return await self._enqueue(principal, request)
        run = await self._admitted_prepare(principal, request)
        if run is None:
            return await self._earlier(principal, request)
        driver = asyncio.create_task(_drive(run), name=f"background-{run.id}")
        self._drivers.add(driver)
        driver.add_done_callback(self._drivers.discard)
        return run.record

    async def get(self, principal: Principal, execution_id: uuid.UUID) -> ExecutionDetail:
        """The execution with its per-node trace, from the stored events."""
        require(principal, Role.VIEWER, "reading an execution")
        async with self._database.tenant(principal.tenant_id) as connection:
            execution = await store.get(connection, principal.tenant_id, execution_id)
            events = await store.list_events(connection, principal.tenant_id, execution_id)
        return ExecutionDetail(execution, build_trace(events))

    async def events(
        self, principal: Principal, execution_id: uuid.UUID, *, after_sequence: int = 0
    ) -> list[ExecutionEvent]:
        """The stored events after `after_sequence`."""
        require(principal, Role.VIEWER, "reading an execution")
        _check_sequence(after_sequence)
        async with self._database.tenant(principal.tenant_id) as connection:
            return await store.list_events(
                connection, principal.tenant_id, execution_id, after_sequence=after_sequence
            )

    async def stream(
        self, principal: Principal, execution_id: uuid.UUID, *, after_sequence: int = 0
    ) -> AsyncIterator[ExecutionEvent]:
        """The events after `after_sequence`, stored then live, until the terminal one."""
        require(principal, Role.VIEWER, "reading an execution")
        _check_sequence(after_sequence)
        last = after_sequence
        async with self._database.tenant(principal.tenant_id) as connection:
            await store.get(connection, principal.tenant_id, execution_id)  # NotFound, if so
        run = self._live.get(execution_id)
        if run is not None and run.record.tenant_id == principal.tenant_id:
            queue = run.subscribe()  # every event so far, then the live ones: no gap
            try:
                while (event := await queue.get()) is not None:
                    if event.sequence > last + 1:
                        # A resumed run holds only its own events: the earlier ones are stored.
                        async with self._database.tenant(principal.tenant_id) as connection:
                            earlier = await store.list_events(
                                connection,
                                principal.tenant_id,
                                execution_id,
                                after_sequence=last,
                                limit=event.sequence - last - 1,
                            )
                        for stored in earlier:
                            yield stored
                            last = stored.sequence
                    if event.sequence > last:
                        yield event
                        last = event.sequence
                        if event.is_terminal:
                            return
            finally:
                run.unsubscribe(queue)
        # Not (or no longer) run here: the event log, then the live events another replica
        # publishes (each once stored), skipping what the log gave. The execution is read
        # before its events, so once it is final, the events read hold its end.
        while True:
            async with self._database.tenant(principal.tenant_id) as connection:
                execution = await store.get(connection, principal.tenant_id, execution_id)
                events = await store.list_events(
                    connection, principal.tenant_id, execution_id, after_sequence=last
                )
            for event in events:
                yield event
                last = event.sequence
                if event.is_terminal:
                    return
            if execution.status.is_final:
                return
            async for event in self._followed_elsewhere(execution_id, last):
                yield event
                last = event.sequence
                if event.is_terminal:
                    return

    async def cancel(
        self, principal: Principal, execution_id: uuid.UUID, *, reason: str = ""
    ) -> Execution:
        """Stop a run; it ends with `execution_cancelled`. A run already over is left as it is."""
        require(principal, Role.RUNNER, "cancelling an execution")
        reason = reason or f"cancelled by {principal.actor}"
        async with self._database.tenant(principal.tenant_id) as connection:
            execution = await store.get(connection, principal.tenant_id, execution_id)
        run = self._live.get(execution_id)
        if run is not None and not execution.status.is_final:
            run.cancel(reason)
            await run.wait()
        elif not execution.status.is_final:
            runner = await self._request_cancel_elsewhere(execution_id, reason)
            if runner is None:
                # Nobody runs it (queued and not taken up yet, or its process went away):
                # end its log here; a worker that takes it up later finds it over.
                await self._end(
                    execution, EventType.EXECUTION_CANCELLED, {"reason": reason, "orphaned": True}
                )
            else:
                await self._until_final(principal.tenant_id, execution_id, CANCEL_WAIT)
        async with self._database.tenant(principal.tenant_id) as connection:
            return await store.get(connection, principal.tenant_id, execution_id)

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
        require(principal, Role.VIEWER, "listing executions")
        async with self._database.tenant(principal.tenant_id) as connection:
            return await store.list_executions(
                connection,
                principal.tenant_id,
                size=page_size,
                token=page_token,
                statuses=statuses,
                workflow_id=workflow_id,
                created_after=created_after,
                created_before=created_before,
            )

    async def shutdown(self, grace: float) -> None:
        """Give live runs `grace` seconds to finish, then cancel the rest (recorded as such)."""
        runs = list(self._live.values())
        if runs:
            await asyncio.wait([asyncio.ensure_future(run.wait()) for run in runs], timeout=grace)
        for run in list(self._live.values()):
            if not await self._hand_over(run):
                run.cancel("the server is shutting down")
        for run in list(self._live.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run.wait(), timeout=10)
        for driver in list(self._drivers):
            driver.cancel()
        if self._drivers:
            await asyncio.wait(self._drivers, timeout=10)
        if self._keepers:
            await asyncio.wait(self._keepers, timeout=10)
        if self._settling:
            await asyncio.wait(self._settling, timeout=10)
        await self._shared_sources.close()

    async def _admitted_prepare(
        self, principal: Principal, request: RunRequest
    ) -> RecordedRun | None:
        """`_prepare`, within this server's limit of runs at once (a slot is taken before any
        await, so concurrent starts cannot overshoot it; the run gives it back as it ends)."""
        if self._admitted >= self._max_running:
            raise ResourceExhaustedError(
                f"this server is running as many executions as it may ({self._max_running}); "
                "retry shortly",
                retry_after=1.0,
                code="executions.too_many_running",
            )
        self._admitted += 1
        try:
            run = await self._prepare(principal, request)
        except BaseException:
            self._admitted -= 1
            raise
        if run is None:
            self._admitted -= 1
        assert not isinstance(run, Execution)
        return run

    async def _prepare(
        self, principal: Principal, request: RunRequest, *, record_only: bool = False
    ) -> RecordedRun | Execution | None:
        """Check and record a run; with `record_only`, the record (for the queue), else a run
        to drive here. None when its `request_id` was seen before."""
        if (request.workflow_id is None) == (request.spec is None):
            raise InvalidArgumentError(
                "give either a workflow or an inline spec, not both",
                field="workflow" if request.workflow_id is None else "spec",
            )
        tenant_id = principal.tenant_id
        version = request.version
        document: Any = request.spec
        cached = False
        if request.workflow_id is not None and version is None and self._versions is not None:
            # The current version, as cached (deleted whenever the workflow changes).
            version = await self._versions.current(tenant_id, request.workflow_id)
            if version is not None:
                document = await self._versions.spec(tenant_id, request.workflow_id, version)
                cached = document is not None
                version = version if cached else None
        async with self._database.tenant(tenant_id) as connection:
            if request.request_id is not None and await store.find_by_request_id(
                connection, tenant_id, request.request_id
            ):
                return None  # seen before: nothing new to start
            if request.workflow_id is not None and not cached:
                current = version is None
                if version is None:
                    workflow = await workflow_store.get(connection, tenant_id, request.workflow_id)
                    version = workflow.version
                stored = await workflow_store.get_version(
                    connection, tenant_id, request.workflow_id, version
                )
                document = stored.spec
                if current and self._versions is not None:
                    await self._versions.remember(
                        tenant_id, request.workflow_id, version, document, current=True
                    )
            stamp = await source_store.stamp(connection, tenant_id)
        lease = await self._shared_sources.lease(
            tenant_id, stamp, lambda: self._definitions(tenant_id)
        )
        execution_id = uuid.uuid4()
        try:
            result = self._validated(document, lease.sources.types_by_name())
            if result.spec is None or not result.ok:
                raise InvalidSpecError(result.violations)
            running = self._engine.start(
                result.spec,
                request.inputs,
                sources=lease.sources,
                execution_id=str(execution_id),
                timeout=request.timeout,
                cache_namespace=str(tenant_id),
            )
            if self._limiter is not None:
                await self._limiter.check_tokens(tenant_id)
                if not record_only:  # a queued run takes its slot when a worker runs it
                    self._slots[execution_id] = await self._limiter.acquire_execution_slot(
                        tenant_id, principal.api_key_id, execution_id
                    )
            async with self._database.tenant(tenant_id) as connection:
                record = await store.create(
                    connection,
                    tenant_id,
                    execution_id=execution_id,
                    spec_hash=result.spec.content_hash,
                    inputs=running.inputs,
                    actor=principal.actor,
                    workflow_id=request.workflow_id,
                    workflow_version=version if request.workflow_id is not None else None,
                    inline_spec=result.spec.to_document() if request.workflow_id is None else None,
                    request_id=request.request_id,
                )
        except BaseException:
            await lease.release()
            await self._release_slot(execution_id)
            raise
        if record.id != execution_id:  # a concurrent start with the same request_id won
            await lease.release()
            await self._release_slot(execution_id)
            return None
        if record_only:
            await lease.release()
            return record
        run = RecordedRun(
            self._database,
            record,
            running,
            lease,
            result.spec,
            on_finish=self._forget,
            publisher=None
            if self._coordination is None
            else self._coordination.fanout.publisher(record.id),
        )
        self._live[run.id] = run
        return run

    # --- background runs through the job queue ---

    async def _earlier(self, principal: Principal, request: RunRequest) -> Execution:
        async with self._database.tenant(principal.tenant_id) as connection:
            earlier = await store.find_by_request_id(
                connection, principal.tenant_id, request.request_id or ""
            )
        assert earlier is not None
        return earlier

    async def _enqueue(self, principal: Principal, request: RunRequest) -> Execution:
        """Record the execution (checked as for a run here) and queue it for a worker on any
        replica. Redis down: UNAVAILABLE, and nothing is kept (or, if the queue failed after
        the record was stored, the record says the run was never queued)."""
        assert self._coordination is not None
        await self._coordination.queue.ready()
        prepared = await self._prepare(principal, request, record_only=True)
        if prepared is None:
            return await self._earlier(principal, request)
        assert isinstance(prepared, Execution)
        try:
            await self._coordination.queue.enqueue(Job(prepared.id, prepared.tenant_id))
        except UnavailableError as exc:
            await self._end(prepared, EventType.EXECUTION_FAILED, {"error": {
                "code": "execution.not_queued", "message": exc.message}})  # fmt: skip
            raise
        return prepared

    async def run_job(self, delivery: Delivery) -> None:
        """Run a queued execution here (a worker of this replica claimed it, in a slot it
        reserved), and acknowledge the job once its final event is stored. One taken over from
        a lost worker is resumed; one handed out too often is failed with the reason."""
        coordination = self._coordination
        assert coordination is not None
        job = delivery.job
        try:
            if not await coordination.leases.acquire(job.execution_id):
                self.release_slot()
                return  # another replica runs it (and will acknowledge it)
            run = await self._job_run(delivery)
        except ResourceExhaustedError as exc:
            # Its tenant runs as many as it may: back to the queue for later (any replica).
            self.release_slot()
            with contextlib.suppress(RedisError, OSError):
                await coordination.queue.hand_back(delivery)
                await coordination.leases.release(job.execution_id)
            raise JobDeferred(exc.retry_after) from exc
        except BaseException:
            self.release_slot()
            with contextlib.suppress(RedisError, OSError):
                await coordination.leases.release(job.execution_id)
            raise
        if run is None:  # over already, or failed here for good
            self.release_slot()
            await coordination.queue.ack(delivery)
            await coordination.leases.release(job.execution_id)
            return
        keeper = self._keep(run, delivery)
        self._deliveries[run.id] = delivery
        try:
            await _drive(run)
        finally:
            self._deliveries.pop(run.id, None)
            await asyncio.wait({keeper})
        await coordination.queue.ack(delivery)

    async def _hand_over(self, run: RecordedRun) -> bool:
        """A queued run still going as this server stops: give its job back for another
        replica to take up at once (and resume), rather than cancel it. False if it is not a
        queued run, or Redis cannot take it back."""
        delivery = self._deliveries.get(run.id)
        if delivery is None or self._coordination is None:
            return False
        try:
            await self._coordination.queue.hand_back(delivery)
        except (RedisError, OSError):
            return False
        run.abandon()
        log.info("execution.handed_back", execution_id=str(run.id))
        return True

    async def _job_run(self, delivery: Delivery) -> RecordedRun | None:
        assert self._coordination is not None
        job = delivery.job
        tenant_id = job.tenant_id
        async with self._database.tenant(tenant_id) as connection:
            try:
                execution = await store.get(connection, tenant_id, job.execution_id)
            except NotFoundError:
                log.warning("execution.job_unknown", execution_id=str(job.execution_id))
                return None
            if execution.status.is_final:
                return None
            if execution.workflow_id is not None and execution.workflow_version is not None:
                stored = await workflow_store.get_version(
                    connection, tenant_id, execution.workflow_id, execution.workflow_version
                )
                document: Any = stored.spec
            else:
                document = await store.inline_spec(connection, tenant_id, execution.id)
            stamp = await source_store.stamp(connection, tenant_id)
        if delivery.count > self._coordination.max_deliveries:
            await self._end(execution, EventType.EXECUTION_FAILED, {"error": {
                "code": "execution.worker_lost",
                "message": f"the execution was taken up {delivery.count - 1} times, and each "
                "time the replica running it stopped before it ended",
            }})  # fmt: skip
            return None
        lease = await self._shared_sources.lease(
            tenant_id, stamp, lambda: self._definitions(tenant_id)
        )
        try:
            result = self._validated(document, lease.sources.types_by_name())
            if result.spec is None or not result.ok:
                # Its sources changed while it waited in the queue.
                await self._end(execution, EventType.EXECUTION_FAILED, {"error": {
                    "code": "invalid_spec", "message": InvalidSpecError(result.violations).message,
                }})  # fmt: skip
                await lease.release()
                return None
            if self._limiter is not None:
                try:
                    await self._limiter.check_tokens(tenant_id)
                except ResourceExhaustedError as exc:
                    await self._end(execution, EventType.EXECUTION_FAILED, {"error": {
                        "code": exc.code, "message": exc.message}})  # fmt: skip
                    await lease.release()
                    return None
                # Refused (the tenant runs its most at once): the job goes back to the queue.
                self._slots[execution.id] = await self._limiter.acquire_execution_slot(
                    tenant_id, _api_key_of(execution), execution.id
                )
            running: Any = self._engine.start(
                result.spec,
                execution.inputs,
                sources=lease.sources,
                execution_id=str(execution.id),
                cache_namespace=str(tenant_id),
            )
        except BaseException:
            await lease.release()
            await self._release_slot(execution.id)
            raise
        if execution.last_sequence > 0:
            log.warning(
                "execution.resumed",
                execution_id=str(execution.id),
                after_sequence=execution.last_sequence,
                delivery=delivery.count,
            )
            running = ResumedExecution(
                running,
                after_sequence=execution.last_sequence,
                reason="the replica running it stopped before it ended; run again from the start",
                delivery=delivery.count,
            )
        run = RecordedRun(
            self._database,
            execution,
            running,
            lease,
            result.spec,
            on_finish=self._forget,
            publisher=self._coordination.fanout.publisher(execution.id),
        )
        self._live[run.id] = run  # its slot, reserved by the worker, is given back by _forget
        return run

    def _keep(self, run: RecordedRun, delivery: Delivery | None) -> asyncio.Task[None]:
        """While `run` goes on here: renew its lease, keep its job claimed, and pick up cancel
        requests from other replicas; let the lease go when it ends."""
        keeper = asyncio.create_task(self._keeping(run, delivery), name=f"keep-{run.id}")
        self._keepers.add(keeper)
        keeper.add_done_callback(self._keepers.discard)
        return keeper

    async def _keeping(self, run: RecordedRun, delivery: Delivery | None) -> None:
        coordination = self._coordination
        assert coordination is not None
        try:
            while not run.finished:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.wait(), coordination.heartbeat)
                    break
                try:
                    if not await coordination.leases.renew(run.id):
                        log.error("execution.lease_lost", execution_id=str(run.id))
                        await coordination.leases.acquire(run.id)
                    if delivery is not None:
                        await coordination.queue.touch(delivery)
                    reason = await coordination.leases.cancel_requested(run.id)
                    if reason is not None:
                        run.cancel(reason)
                except (RedisError, OSError) as exc:
                    log.warning(
                        "execution.heartbeat_failed", execution_id=str(run.id), error=str(exc)
                    )
        finally:
            with contextlib.suppress(RedisError, OSError):
                await coordination.leases.release(run.id)

    async def on_cancel_request(self, execution_id: uuid.UUID, reason: str) -> None:
        """A replica asks whoever runs `execution_id` to stop it (pub/sub)."""
        run = self._live.get(execution_id)
        if run is not None:
            run.cancel(reason)

    async def _request_cancel_elsewhere(self, execution_id: uuid.UUID, reason: str) -> str | None:
        """Ask the replica running it to stop it; that replica's id, or None if none does."""
        if self._coordination is None:
            return None
        try:
            await self._coordination.leases.request_cancel(execution_id, reason)
            return await self._coordination.leases.holder(execution_id)
        except (RedisError, OSError):
            return None

    async def _until_final(
        self, tenant_id: uuid.UUID, execution_id: uuid.UUID, timeout: float
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            async with self._database.tenant(tenant_id) as connection:
                if (await store.get(connection, tenant_id, execution_id)).status.is_final:
                    return
            await asyncio.sleep(POLL_INTERVAL / 2)

    async def _followed_elsewhere(
        self, execution_id: uuid.UUID, after_sequence: int
    ) -> AsyncIterator[ExecutionEvent]:
        """Live events of a run on another replica, through Redis, from `after_sequence`; ends
        when nobody runs it for a while or the stream lost what comes next (then the caller
        reads the log again). Without Redis: a pause before the caller reads the log again."""
        coordination = self._coordination
        if coordination is None:
            await asyncio.sleep(POLL_INTERVAL)
            return

        async def still_running() -> bool:
            return await coordination.leases.holder(execution_id) is not None

        try:
            async for event in coordination.fanout.follow(
                execution_id, after_sequence=after_sequence, still_running=still_running
            ):
                yield event
        except StreamGap:
            return
        except (RedisError, OSError) as exc:
            log.warning(
                "execution.follow_fell_back", execution_id=str(execution_id), error=str(exc)
            )
            await asyncio.sleep(POLL_INTERVAL)

    async def _end(self, execution: Execution, kind: EventType, data: dict[str, Any]) -> None:
        """End a run that is not running anywhere with one terminal event."""
        event = ExecutionEvent(
            execution_id=str(execution.id),
            sequence=execution.last_sequence + 1,
            timestamp=datetime.now(UTC),
            type=kind,
            data={**data, "usage": execution.usage.to_dict()},
        )
        async with self._database.tenant(execution.tenant_id) as connection:
            await store.append_events(connection, execution.tenant_id, execution.id, [event])
        log.warning("execution.ended_unrun", execution_id=str(execution.id), type=kind.value)

    def _validated(self, document: Any, source_types: Mapping[str, str]) -> ValidationResult:
        """validate_spec, remembered for valid specs: most runs run a spec seen before, and
        the answer depends only on the document and the names and types of the sources."""
        key = (_document_hash(document), tuple(sorted(source_types.items())))
        result = self._validations.get(key)
        if result is None:
            result = validate_spec(
                document, sources=source_types, plugins=self._plugins, limits=self._limits
            )
            if result.ok:
                self._validations[key] = result
        return result

    async def _definitions(self, tenant_id: uuid.UUID) -> Sequence[SourceDefinition]:
        async with self._database.tenant(tenant_id) as connection:
            return await source_store.definitions(connection, tenant_id, self._keyring)

    def _forget(self, run: RecordedRun) -> None:
        if self._live.pop(run.id, None) is not None:
            self._admitted -= 1
        if self._limiter is not None:
            settling = asyncio.create_task(self._settle(run), name=f"settle-{run.id}")
            self._settling.add(settling)
            settling.add_done_callback(self._settling.discard)

    async def _settle(self, run: RecordedRun) -> None:
        """After a run: its concurrency slot back, its tokens counted towards the day's quota."""
        await self._release_slot(run.id)
        assert self._limiter is not None
        usage = run.final_usage
        if usage.total_tokens:
            await self._limiter.add_tokens(run.record.tenant_id, usage.total_tokens)

    async def _release_slot(self, execution_id: uuid.UUID | None) -> None:
        slot = self._slots.pop(execution_id, None) if execution_id is not None else None
        if slot is not None:
            await slot.release()


async def _drive(run: RecordedRun) -> None:
    """Run a background execution to its end; its events are in the log and with followers."""
    try:
        async for _ in run.events():
            pass
    except Exception:
        log.exception("execution.background_failed", execution_id=str(run.id))


class JobDeferred(Exception):
    """A job put back in the queue for now (its tenant's limits); try again after a while."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"deferred for {retry_after:g} s")
        self.retry_after = retry_after


def _document_hash(document: Any) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _api_key_of(execution: Execution) -> uuid.UUID | None:
    """The API key that started the execution (its creator, `api_key:<id>`), if one did."""
    kind, _, value = execution.created_by.partition(":")
    if kind != "api_key":
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _check_sequence(after_sequence: int) -> None:
    if after_sequence < 0:
        raise InvalidArgumentError("after_sequence must not be negative", field="after_sequence")

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
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentflow_grpc.errors import InvalidArgumentError, InvalidSpecError, ResourceExhaustedError
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.runtime.engine import ExecutionEngine
from agentflow_grpc.runtime.events import EventType, ExecutionEvent
from agentflow_grpc.services.access import require
from agentflow_grpc.services.recorded_run import RecordedRun
from agentflow_grpc.services.shared_sources import SharedSources
from agentflow_grpc.services.traces import NodeTrace, build_trace
from agentflow_grpc.sources.base import SourceDefinition
from agentflow_grpc.sources.registry import SourceRegistry
from agentflow_grpc.spec import Limits, PluginCatalog, validate_spec
from agentflow_grpc.storage import executions as store
from agentflow_grpc.storage import sources as source_store
from agentflow_grpc.storage import workflows as workflow_store
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database
from agentflow_grpc.storage.pagination import Page
from agentflow_grpc.storage.records import Execution, ExecutionStatus, Principal, Role

log = get_logger("agentflow.executions")

POLL_INTERVAL = 0.25  # seconds between reads of the log when following a run of another process


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

    async def start(self, principal: Principal, request: RunRequest) -> RecordedRun:
        """A run for the caller to drive by iterating `events()` (a `request_id` plays no part:
        a repeated streamed run is a new run)."""
        require(principal, Role.RUNNER, "running a workflow")
        run = await self._admitted_prepare(principal, dataclasses.replace(request, request_id=None))
        assert run is not None  # without a request_id a run is always new
        return run

    async def start_background(self, principal: Principal, request: RunRequest) -> Execution:
        """Start a run driven by this process, and return its record at once. A `request_id`
        seen before returns the execution that request started, and starts nothing."""
        require(principal, Role.RUNNER, "running a workflow")
        run = await self._admitted_prepare(principal, request)
        if run is None:
            async with self._database.tenant(principal.tenant_id) as connection:
                earlier = await store.find_by_request_id(
                    connection, principal.tenant_id, request.request_id or ""
                )
            assert earlier is not None
            return earlier
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
                    if event.sequence > last:
                        yield event
                        last = event.sequence
                        if event.is_terminal:
                            return
            finally:
                run.unsubscribe(queue)
        # Not (or no longer) run here: the event log, read until the run ends. The execution
        # is read before its events, so once it is final, the events read hold its end.
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
            await asyncio.sleep(POLL_INTERVAL)

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
            # Nobody runs it any more (its process went away): end its log here.
            await self._end_orphan(principal, execution, reason)
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
            run.cancel("the server is shutting down")
        for run in list(self._live.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run.wait(), timeout=10)
        for driver in list(self._drivers):
            driver.cancel()
        if self._drivers:
            await asyncio.wait(self._drivers, timeout=10)
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
        return run

    async def _prepare(self, principal: Principal, request: RunRequest) -> RecordedRun | None:
        if (request.workflow_id is None) == (request.spec is None):
            raise InvalidArgumentError(
                "give either a workflow or an inline spec, not both",
                field="workflow" if request.workflow_id is None else "spec",
            )
        tenant_id = principal.tenant_id
        version = request.version
        async with self._database.tenant(tenant_id) as connection:
            if request.request_id is not None and await store.find_by_request_id(
                connection, tenant_id, request.request_id
            ):
                return None  # seen before: nothing new to start
            if request.workflow_id is not None:
                if version is None:
                    workflow = await workflow_store.get(connection, tenant_id, request.workflow_id)
                    version = workflow.version
                stored = await workflow_store.get_version(
                    connection, tenant_id, request.workflow_id, version
                )
                document = stored.spec
            else:
                document = request.spec
            stamp = await source_store.stamp(connection, tenant_id)
        lease = await self._shared_sources.lease(
            tenant_id, stamp, lambda: self._definitions(tenant_id)
        )
        try:
            result = validate_spec(
                document,
                sources=lease.sources.types_by_name(),
                plugins=self._plugins,
                limits=self._limits,
            )
            if result.spec is None or not result.ok:
                raise InvalidSpecError(result.violations)
            execution_id = uuid.uuid4()
            running = self._engine.start(
                result.spec,
                request.inputs,
                sources=lease.sources,
                execution_id=str(execution_id),
                timeout=request.timeout,
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
            raise
        if record.id != execution_id:  # a concurrent start with the same request_id won
            await lease.release()
            return None
        run = RecordedRun(
            self._database, record, running, lease, result.spec, on_finish=self._forget
        )
        self._live[run.id] = run
        return run

    async def _definitions(self, tenant_id: uuid.UUID) -> Sequence[SourceDefinition]:
        async with self._database.tenant(tenant_id) as connection:
            return await source_store.definitions(connection, tenant_id, self._keyring)

    def _forget(self, run: RecordedRun) -> None:
        if self._live.pop(run.id, None) is not None:
            self._admitted -= 1

    async def _end_orphan(self, principal: Principal, execution: Execution, reason: str) -> None:
        event = ExecutionEvent(
            execution_id=str(execution.id),
            sequence=execution.last_sequence + 1,
            timestamp=datetime.now(UTC),
            type=EventType.EXECUTION_CANCELLED,
            data={"reason": reason, "usage": execution.usage.to_dict(), "orphaned": True},
        )
        async with self._database.tenant(principal.tenant_id) as connection:
            await store.append_events(connection, principal.tenant_id, execution.id, [event])
        log.warning("execution.orphan_cancelled", execution_id=str(execution.id))


async def _drive(run: RecordedRun) -> None:
    """Run a background execution to its end; its events are in the log and with followers."""
    try:
        async for _ in run.events():
            pass
    except Exception:
        log.exception("execution.background_failed", execution_id=str(run.id))


def _check_sequence(after_sequence: int) -> None:
    if after_sequence < 0:
        raise InvalidArgumentError("after_sequence must not be negative", field="after_sequence")

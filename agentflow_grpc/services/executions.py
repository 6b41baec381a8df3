"""Executions: start a run of a stored workflow version or an inline spec, record every event.

`ExecutionService.start()` checks everything a run needs before anything is stored (the spec
against the tenant's sources, the inputs against the spec): a refused run leaves no record.
It returns a `RecordedRun`; iterating its events runs the workflow while an `EventLogWriter`
stores each event. The terminal event is passed on only once the whole log is stored, so a
caller that has seen the end can read the same run back. A caller that stops reading cancels
the run, and the cancellation is recorded too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentflow_grpc.errors import InvalidArgumentError, InvalidSpecError
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.runtime.engine import Execution as RunningExecution
from agentflow_grpc.runtime.engine import ExecutionEngine
from agentflow_grpc.runtime.events import ExecutionEvent
from agentflow_grpc.services.access import require
from agentflow_grpc.services.event_log import EventLogWriter
from agentflow_grpc.services.traces import NodeTrace, build_trace
from agentflow_grpc.sources.registry import SourceRegistry, SourceSet
from agentflow_grpc.spec import Limits, PluginCatalog, WorkflowSpec, validate_spec
from agentflow_grpc.storage import executions as store
from agentflow_grpc.storage import sources as source_store
from agentflow_grpc.storage import workflows as workflow_store
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database
from agentflow_grpc.storage.pagination import Page
from agentflow_grpc.storage.records import Execution, ExecutionStatus, Principal, Role

log = get_logger("agentflow.executions")


@dataclass(frozen=True, slots=True)
class ExecutionDetail:
    execution: Execution
    trace: list[NodeTrace]


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
    ) -> None:
        self._database = database
        self._engine = engine
        self._keyring = keyring
        self._sources = sources
        self._plugins = plugins
        self._limits = limits

    async def start(
        self,
        principal: Principal,
        *,
        inputs: Mapping[str, Any],
        workflow_id: uuid.UUID | None = None,
        version: int | None = None,
        spec: Any = None,
    ) -> RecordedRun:
        """A run of `workflow_id` (its current version, or `version`), or of the inline `spec`."""
        require(principal, Role.RUNNER, "running a workflow")
        if (workflow_id is None) == (spec is None):
            raise InvalidArgumentError(
                "give either a workflow or an inline spec", field="workflow" if spec else "spec"
            )
        tenant_id = principal.tenant_id
        async with self._database.tenant(tenant_id) as connection:
            if workflow_id is not None:
                if version is None:
                    version = (await workflow_store.get(connection, tenant_id, workflow_id)).version
                document = (
                    await workflow_store.get_version(connection, tenant_id, workflow_id, version)
                ).spec
            else:
                document = spec
            definitions = await source_store.definitions(connection, tenant_id, self._keyring)
        sources = SourceSet(definitions, self._sources)
        result = validate_spec(
            document,
            sources=sources.types_by_name(),
            plugins=self._plugins,
            limits=self._limits,
        )
        if result.spec is None or not result.ok:
            raise InvalidSpecError(result.violations)
        execution_id = uuid.uuid4()
        running = self._engine.start(
            result.spec, inputs, sources=sources, execution_id=str(execution_id)
        )
        async with self._database.tenant(tenant_id) as connection:
            record = await store.create(
                connection,
                tenant_id,
                execution_id=execution_id,
                spec_hash=result.spec.content_hash,
                inputs=running.inputs,
                actor=principal.actor,
                workflow_id=workflow_id,
                workflow_version=version if workflow_id is not None else None,
                inline_spec=result.spec.to_document() if workflow_id is None else None,
            )
        return RecordedRun(self._database, record, running, sources, result.spec)

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
        require(principal, Role.VIEWER, "reading an execution")
        if after_sequence < 0:
            raise InvalidArgumentError(
                "after_sequence must not be negative", field="after_sequence"
            )
        async with self._database.tenant(principal.tenant_id) as connection:
            return await store.list_events(
                connection, principal.tenant_id, execution_id, after_sequence=after_sequence
            )

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


class RecordedRun:
    """A run whose events go to the event log as they are passed on. Iterate `events()` once."""

    def __init__(
        self,
        database: Database,
        record: Execution,
        running: RunningExecution,
        sources: SourceSet,
        spec: WorkflowSpec,
    ) -> None:
        self.record = record
        self.spec = spec
        self._database = database
        self._running = running
        self._sources = sources
        self._pump: asyncio.Task[None] | None = None
        self._passed_on: asyncio.Queue[ExecutionEvent | None] = asyncio.Queue()

    @property
    def id(self) -> uuid.UUID:
        return self.record.id

    def cancel(self, reason: str = "cancelled by request") -> None:
        self._running.cancel(reason)

    async def events(self) -> AsyncIterator[ExecutionEvent]:
        if self._pump is not None:
            raise RuntimeError("a run's events can be iterated only once")
        self._pump = asyncio.create_task(self._record(), name=f"record-{self.id}")
        try:
            while (event := await self._passed_on.get()) is not None:
                yield event
                if event.is_terminal:
                    break
        finally:
            if not self._pump.done():
                # The caller stopped reading: the run is cancelled, and that is recorded.
                self._running.cancel("the caller stopped reading the execution's events")
            await asyncio.wait({self._pump})  # a cancelled caller does not cancel the recording
        self._pump.result()  # the recording's failure, if it failed

    async def _record(self) -> None:
        writer = EventLogWriter(self._database, self.record.tenant_id, self.id)
        stream = self._running.events()
        try:
            async for event in stream:
                writer.put(event)
                if event.is_terminal:
                    await writer.close()
                self._passed_on.put_nowait(event)
            await writer.close()
        except BaseException:
            log.exception("execution.recording_failed", execution_id=str(self.id))
            await stream.aclose()  # stops the run: its events can no longer be kept
            await writer.abort()
            raise
        finally:
            self._passed_on.put_nowait(None)
            await self._sources.aclose()

"""Preparing a run: everything checked before anything is stored, then a run to drive.

Both ways into a run go through `RunPreparer`: a request (`new_run` to drive here,
`new_record` for the queue) and a queued execution a worker took up (`stored_run`, then
`prepare`). The steps:

1. what to run: a stored workflow at its current version (through the `WorkflowVersionCache`),
   at a given version (always from the database), or an inline spec;
2. the tenant's sources, leased from `SharedSources` (opened once per change of the sources);
3. the spec validated against those sources (`SpecValidations`: remembered for valid specs);
4. compiled and the inputs checked (`ExecutionEngine.start`: `InvalidInputsError` here);
5. for a request: the tenant's token quota checked and (to run here) its concurrency slot
   taken, then the pending execution recorded;
6. its webhook: the request's `webhook_source`, else the spec's `webhook` (a `webhook`
   source's id, kept with the execution: docs/webhooks.md);
7. a `RecordedRun` built (its events fanned out to followers on other replicas once stored)
   and listed among the server's live runs.

A refused run leaves no record, and whatever it took (its sources' lease, its slot) is given
back.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentflow_grpc.caching.workflows import WorkflowVersionCache
from agentflow_grpc.engine.execution import Execution as EngineExecution
from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.engine.resumption import Resumption
from agentflow_grpc.model.errors import InvalidArgumentError, InvalidSpecError, NotFoundError
from agentflow_grpc.model.records import Execution, Principal
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability import spans
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.queue.fanout import EventFanout
from agentflow_grpc.services.admission import Admission
from agentflow_grpc.services.live_runs import LiveRuns
from agentflow_grpc.services.recorded_run import RecordedRun
from agentflow_grpc.services.run_records import RunRecords
from agentflow_grpc.services.shared_sources import SharedSources, SourceLease
from agentflow_grpc.services.validations import SpecValidations
from agentflow_grpc.sources.registry import SourceRegistry
from agentflow_grpc.sources.webhook import TYPE_NAME as WEBHOOK_TYPE
from agentflow_grpc.spec import Limits, PluginCatalog, WorkflowSpec
from agentflow_grpc.storage import executions as store
from agentflow_grpc.storage import sources as source_store
from agentflow_grpc.storage import workflows as workflow_store
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database

log = get_logger("agentflow.executions")


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What to run: a stored workflow (at `version`, or its current one) or an inline spec."""

    inputs: Mapping[str, Any]
    workflow_id: uuid.UUID | None = None
    version: int | None = None
    spec: Any = None
    timeout: float | None = None  # seconds; the engine's execution timeout when None
    request_id: str | None = None
    webhook_source: str | None = None  # a `webhook` source's name, instead of the spec's


@dataclass(frozen=True, slots=True)
class PreparedRun:
    """A checked, compiled run that has not started, holding its lease of the sources."""

    spec: WorkflowSpec
    running: EngineExecution
    sources: SourceLease

    async def release(self) -> None:
        """Let the sources go (the run will not be driven); idempotent."""
        await self.sources.release()


@dataclass(frozen=True, slots=True)
class StoredRun:
    """A queued execution as a worker finds it: its record, its document, its sources' stamp."""

    execution: Execution
    document: Any
    stamp: Hashable


@dataclass(frozen=True, slots=True)
class _Resolved:
    document: Any
    version: int | None
    stamp: Hashable


class RunPreparer:
    def __init__(
        self,
        database: Database,
        engine: ExecutionEngine,
        keyring: Keyring,
        *,
        sources: SourceRegistry,
        plugins: PluginCatalog,
        limits: Limits,
        versions: WorkflowVersionCache,
        fanout: EventFanout,
        admission: Admission,
        records: RunRecords,
        live: LiveRuns,
        metrics: Metrics,
    ) -> None:
        self._database = database
        self._engine = engine
        self._keyring = keyring
        self._shared_sources = SharedSources(sources)
        self._validations = SpecValidations(plugins=plugins, limits=limits, metrics=metrics)
        self._metrics = metrics
        self._versions = versions
        self._fanout = fanout
        self._admission = admission
        self._records = records
        self._live = live

    async def new_run(self, principal: Principal, request: RunRequest) -> RecordedRun:
        """A run to drive here, recorded, holding the tenant's concurrency slot (a request
        without a `request_id`: always a new run)."""
        assert request.request_id is None
        recorded = await self._recorded(principal, request, hold_slot=True)
        assert recorded is not None
        record, prepared = recorded
        return self.recorded_run(record, prepared)

    async def new_record(self, principal: Principal, request: RunRequest) -> Execution | None:
        """The pending record of a run for the queue (its slot is taken by the worker that
        runs it); None when its `request_id` was seen before."""
        recorded = await self._recorded(principal, request, hold_slot=False)
        if recorded is None:
            return None
        record, prepared = recorded
        await prepared.release()
        return record

    async def stored_run(self, tenant_id: uuid.UUID, execution_id: uuid.UUID) -> StoredRun | None:
        """A queued execution with its document; None when it is unknown or already over."""
        async with self._database.tenant(tenant_id) as connection:
            try:
                execution = await store.get(connection, tenant_id, execution_id)
            except NotFoundError:
                log.warning("execution.job_unknown", execution_id=str(execution_id))
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
        return StoredRun(execution, document, stamp)

    async def prepare(
        self,
        tenant_id: uuid.UUID,
        document: Any,
        stamp: Hashable,
        inputs: Mapping[str, Any],
        *,
        execution_id: uuid.UUID,
        timeout: float | None = None,
        resume: Resumption | None = None,
    ) -> PreparedRun:
        """Lease the tenant's sources, validate `document` against them, compile it and check
        `inputs`: InvalidSpecError, InvalidInputsError (the lease is given back then). The run
        is durable (its events are recorded); `resume`: it continues its stored log."""
        lease = await self._shared_sources.lease(
            tenant_id, stamp, lambda: self._definitions(tenant_id)
        )
        try:
            result = self._validations.validate(document, lease.sources.types_by_name())
            if result.spec is None or not result.ok:
                raise InvalidSpecError(result.violations)
            running = self._engine.start(
                result.spec,
                inputs,
                sources=lease.sources,
                execution_id=str(execution_id),
                timeout=timeout,
                cache_namespace=str(tenant_id),
                durable=True,
                resume=resume,
            )
        except BaseException:
            await lease.release()
            raise
        return PreparedRun(result.spec, running, lease)

    def recorded_run(self, record: Execution, prepared: PreparedRun) -> RecordedRun:
        """The run of `record`, listed among the server's live runs until its log is stored
        to the end."""
        run = RecordedRun(
            self._database,
            record,
            prepared.running,
            prepared.sources,
            prepared.spec,
            metrics=self._metrics,
            on_finish=self._live.finished,
            publisher=self._fanout.publisher(record.id),
        )
        self._live.add(run)
        return run

    async def close(self) -> None:
        """Close the tenants' opened sources (at shutdown, once no run is left)."""
        await self._shared_sources.close()

    async def _recorded(
        self, principal: Principal, request: RunRequest, *, hold_slot: bool
    ) -> tuple[Execution, PreparedRun] | None:
        """Check and record a run; None when its `request_id` was seen before."""
        if (request.workflow_id is None) == (request.spec is None):
            raise InvalidArgumentError(
                "give either a workflow or an inline spec, not both",
                field="workflow" if request.workflow_id is None else "spec",
            )
        tenant_id = principal.tenant_id
        resolved = await self._resolve(tenant_id, request)
        if resolved is None:
            return None  # seen before: nothing new to start
        execution_id = uuid.uuid4()
        prepared = await self.prepare(
            tenant_id,
            resolved.document,
            resolved.stamp,
            request.inputs,
            execution_id=execution_id,
            timeout=request.timeout,
        )
        try:
            webhook_source_id = _webhook_source_id(request, prepared)
            await self._admission.check_tokens(tenant_id)
            if hold_slot:
                await self._admission.hold_slot(tenant_id, principal.api_key_id, execution_id)
            record = await self._records.create(
                tenant_id,
                execution_id,
                spec_hash=prepared.spec.content_hash,
                inputs=prepared.running.inputs,
                actor=principal.actor,
                workflow_id=request.workflow_id,
                workflow_version=resolved.version if request.workflow_id is not None else None,
                inline_spec=prepared.spec.to_document() if request.workflow_id is None else None,
                request_id=request.request_id,
                trace_id=spans.current_trace_id(),  # the starting call's; its spans continue it
                webhook_source_id=webhook_source_id,
            )
        except BaseException:
            await prepared.release()
            await self._admission.release_slot(execution_id)
            raise
        if record.id != execution_id:  # a concurrent start with the same request_id won
            await prepared.release()
            await self._admission.release_slot(execution_id)
            return None
        return record, prepared

    async def _resolve(self, tenant_id: uuid.UUID, request: RunRequest) -> _Resolved | None:
        """The document to run and its version, and the tenant's sources' stamp; None when
        the request's `request_id` was seen before."""
        version = request.version
        document: Any = request.spec
        cached = False
        if request.workflow_id is not None and version is None:
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
                return None
            if request.workflow_id is not None and not cached:
                current = version is None
                if version is None:
                    workflow = await workflow_store.get(connection, tenant_id, request.workflow_id)
                    version = workflow.version
                stored = await workflow_store.get_version(
                    connection, tenant_id, request.workflow_id, version
                )
                document = stored.spec
                if current:
                    await self._versions.remember(
                        tenant_id, request.workflow_id, version, document, current=True
                    )
            stamp = await source_store.stamp(connection, tenant_id)
        return _Resolved(document, version, stamp)

    async def _definitions(self, tenant_id: uuid.UUID) -> Sequence[SourceDefinition]:
        async with self._database.tenant(tenant_id) as connection:
            return await source_store.definitions(connection, tenant_id, self._keyring)


def _webhook_source_id(request: RunRequest, prepared: PreparedRun) -> uuid.UUID | None:
    """The id of the `webhook` source the run tells when it ends: the request's, else the
    spec's (which the validator has checked), else none."""
    spec_webhook = prepared.spec.webhook
    name = request.webhook_source or (spec_webhook.source if spec_webhook else None)
    if not name:
        return None
    definition = prepared.sources.sources.definition(name)
    if definition is None or definition.id is None:
        raise InvalidArgumentError(
            f"webhook_source: no source named {name!r}",
            field="webhook_source",
            code="source.unknown",
        )
    if definition.type != WEBHOOK_TYPE:
        raise InvalidArgumentError(
            f"webhook_source: source {name!r} is of type {definition.type}, not {WEBHOOK_TYPE}",
            field="webhook_source",
            code="source.incompatible",
        )
    return uuid.UUID(definition.id)

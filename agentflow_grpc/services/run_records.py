"""The executions' records and event logs, as the execution services read and write them.

Each call is one transaction of the tenant. Besides reading and listing, `end()` closes the log
of a run that runs nowhere (cancelled while queued, refused when a worker took it up, lost too
often) with its one terminal event, counted in `agentflow_executions_total{status}`; a failure
so ended is an error-group occurrence too, recorded with the event, and so is its webhook.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.records import Execution, ExecutionStatus
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.services.error_events import RunFailures, record_failures
from agentflow_grpc.services.webhook_payloads import record_delivery
from agentflow_grpc.storage import executions as store
from agentflow_grpc.storage.database import Database
from agentflow_grpc.storage.pagination import Page

log = get_logger("agentflow.executions")


class RunRecords:
    def __init__(self, database: Database, metrics: Metrics) -> None:
        self._database = database
        self._metrics = metrics

    async def create(
        self,
        tenant_id: uuid.UUID,
        execution_id: uuid.UUID,
        *,
        spec_hash: str,
        inputs: dict[str, Any],
        actor: str,
        workflow_id: uuid.UUID | None,
        workflow_version: int | None,
        inline_spec: dict[str, Any] | None,
        request_id: str | None,
        trace_id: str | None = None,
        webhook_source_id: uuid.UUID | None = None,
    ) -> Execution:
        """A pending execution; with a `request_id` stored before, that request's execution
        (its id is not `execution_id` then)."""
        async with self._database.tenant(tenant_id) as connection:
            return await store.create(
                connection,
                tenant_id,
                execution_id=execution_id,
                spec_hash=spec_hash,
                inputs=inputs,
                actor=actor,
                workflow_id=workflow_id,
                workflow_version=workflow_version,
                inline_spec=inline_spec,
                request_id=request_id,
                trace_id=trace_id,
                webhook_source_id=webhook_source_id,
            )

    async def get(self, tenant_id: uuid.UUID, execution_id: uuid.UUID) -> Execution:
        """The execution (NotFoundError if the tenant has none by that id)."""
        async with self._database.tenant(tenant_id) as connection:
            return await store.get(connection, tenant_id, execution_id)

    async def with_events(
        self, tenant_id: uuid.UUID, execution_id: uuid.UUID, *, after_sequence: int = 0
    ) -> tuple[Execution, list[ExecutionEvent]]:
        """The execution and its stored events after `after_sequence`, read in that order in
        one transaction: once the execution is final, the events hold its end."""
        async with self._database.tenant(tenant_id) as connection:
            execution = await store.get(connection, tenant_id, execution_id)
            events = await store.list_events(
                connection, tenant_id, execution_id, after_sequence=after_sequence
            )
        return execution, events

    async def events(
        self,
        tenant_id: uuid.UUID,
        execution_id: uuid.UUID,
        *,
        after_sequence: int = 0,
        limit: int | None = None,
    ) -> list[ExecutionEvent]:
        async with self._database.tenant(tenant_id) as connection:
            return await store.list_events(
                connection, tenant_id, execution_id, after_sequence=after_sequence, limit=limit
            )

    async def list(
        self,
        tenant_id: uuid.UUID,
        *,
        page_size: int,
        page_token: str,
        statuses: Collection[ExecutionStatus],
        workflow_id: uuid.UUID | None,
        created_after: datetime | None,
        created_before: datetime | None,
    ) -> Page[Execution]:
        async with self._database.tenant(tenant_id) as connection:
            return await store.list_executions(
                connection,
                tenant_id,
                size=page_size,
                token=page_token,
                statuses=statuses,
                workflow_id=workflow_id,
                created_after=created_after,
                created_before=created_before,
            )

    async def started_by(self, tenant_id: uuid.UUID, request_id: str) -> Execution:
        """The execution a request with `request_id` started before."""
        async with self._database.tenant(tenant_id) as connection:
            earlier = await store.find_by_request_id(connection, tenant_id, request_id)
        assert earlier is not None
        return earlier

    async def end(self, execution: Execution, kind: EventType, data: dict[str, Any]) -> None:
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
            failures = RunFailures.of(execution.id, execution.workflow_id, None)
            await record_failures(connection, execution.tenant_id, failures.occurrences([event]))
            if execution.webhook_source_id is not None:
                await record_delivery(
                    connection, execution.tenant_id, execution.id, execution.webhook_source_id
                )
        self._metrics.execution_ended_unrun(kind.value.removeprefix("execution_"))
        log.warning("execution.ended_unrun", execution_id=str(execution.id), type=kind.value)

    async def fail(self, execution: Execution, code: str, message: str) -> None:
        """End a run that is not running anywhere as failed, with `code` and `message`."""
        await self.end(
            execution, EventType.EXECUTION_FAILED, {"error": {"code": code, "message": message}}
        )

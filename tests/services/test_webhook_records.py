"""A run's webhook delivery is stored in the transaction that stores its terminal event: both or
neither. The event log writer (services/event_log.py) and a run ended where it runs nowhere
(RunRecords.end) each make one; a run without a webhook makes none.

Real PostgreSQL; a trigger added through the owner connection makes the delivery's insert fail.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.records import Execution, ExecutionStatus, Tenant
from agentflow_grpc.model.webhooks import DeliveryState
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.services.event_log import EventLogWriter
from agentflow_grpc.services.run_records import RunRecords
from agentflow_grpc.storage import executions, webhooks
from agentflow_grpc.storage.database import Database

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
SOURCE_ID = uuid.uuid4()  # a delivery names its source; the source is read when it is sent


def event(execution: Execution, sequence: int, kind: EventType, **data: object) -> ExecutionEvent:
    node = kind.value.startswith("node_")
    return ExecutionEvent(
        execution_id=str(execution.id),
        sequence=sequence,
        timestamp=T0 + timedelta(milliseconds=sequence),
        type=kind,
        node_id="answer" if node else None,
        attempt=1 if node else None,
        data=dict(data),
    )


def run_events(execution: Execution) -> list[ExecutionEvent]:
    return [
        event(execution, 1, EventType.EXECUTION_STARTED, workflow="x"),
        event(execution, 2, EventType.NODE_STARTED, node_type="llm"),
        event(execution, 3, EventType.NODE_COMPLETED, output={"text": "hi"}, duration_ms=1.0),
        event(
            execution,
            4,
            EventType.EXECUTION_COMPLETED,
            outputs={"answer": "hi"},
            usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            duration_ms=4.0,
        ),
    ]


async def new_execution(database: Database, tenant: Tenant, *, webhook: bool = True) -> Execution:
    async with database.tenant(tenant.id) as connection:
        return await executions.create(
            connection,
            tenant.id,
            spec_hash="h",
            inputs={},
            actor="test",
            inline_spec={"name": "x"},
            webhook_source_id=SOURCE_ID if webhook else None,
        )


async def write(database: Database, execution: Execution, events: list[ExecutionEvent]) -> None:
    writer = EventLogWriter(
        database,
        execution.tenant_id,
        execution.id,
        metrics=Metrics(),
        max_batch=1,  # one event a batch: the terminal one alone in its transaction
        webhook_source_id=execution.webhook_source_id,
    )
    for item in events:
        writer.put(item)
    await writer.close()


async def reread(database: Database, execution: Execution) -> Execution:
    async with database.tenant(execution.tenant_id) as connection:
        return await executions.get(connection, execution.tenant_id, execution.id)


async def deliveries(database: Database, execution: Execution) -> list[webhooks.WebhookDelivery]:
    async with database.tenant(execution.tenant_id) as connection:
        return await webhooks.list_for_execution(connection, execution.tenant_id, execution.id)


@pytest.fixture
async def failing_deliveries(owner: asyncpg.Connection) -> AsyncIterator[None]:
    """Every insert into webhook_deliveries fails while the fixture lasts."""
    await owner.execute("""
        CREATE FUNCTION test_refuse_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'no deliveries today'; END $$;
        CREATE TRIGGER test_refuse_delivery BEFORE INSERT ON webhook_deliveries
            FOR EACH ROW EXECUTE FUNCTION test_refuse_delivery();
    """)
    try:
        yield
    finally:
        await owner.execute("""
            DROP TRIGGER test_refuse_delivery ON webhook_deliveries;
            DROP FUNCTION test_refuse_delivery();
        """)


async def test_the_terminal_batch_stores_the_delivery_with_the_summary_and_trace(
    database: Database, tenant_a: Tenant
) -> None:
    execution = await new_execution(database, tenant_a)
    events = run_events(execution)
    await write(database, execution, events[:3])
    assert await deliveries(database, execution) == [], "none before the run ends"
    await write(database, execution, events[3:])

    (delivery,) = await deliveries(database, execution)
    assert (delivery.state, delivery.attempt_count) == (DeliveryState.PENDING, 0)
    assert (delivery.source_id, delivery.event_type) == (SOURCE_ID, "execution.completed")
    payload = delivery.payload
    assert payload["type"] == "execution.completed"
    assert payload["timestamp"] == events[3].timestamp.isoformat()
    data = payload["data"]
    assert data["execution"] == f"executions/{execution.id}"
    assert (data["status"], data["outputs"]) == ("completed", {"answer": "hi"})
    assert data["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    (node,) = data["trace"]
    assert (node["node_id"], node["status"]) == ("answer", "completed")
    assert node["attempts"][0]["output"] == {"text": "hi"}


async def test_when_the_delivery_cannot_be_stored_neither_is_the_terminal_event(
    database: Database, tenant_a: Tenant, failing_deliveries: None
) -> None:
    execution = await new_execution(database, tenant_a)
    events = run_events(execution)
    with pytest.raises(asyncpg.RaiseError, match="no deliveries today"):
        await write(database, execution, events)
    stored = await reread(database, execution)
    assert stored.last_sequence == 3, "the batches before the end are stored"
    assert stored.status is ExecutionStatus.RUNNING, "the end is not, without its webhook"


async def test_a_run_without_a_webhook_stores_no_delivery(
    database: Database, tenant_a: Tenant, failing_deliveries: None
) -> None:
    execution = await new_execution(database, tenant_a, webhook=False)
    await write(database, execution, run_events(execution))  # the trigger never fires
    assert (await reread(database, execution)).status is ExecutionStatus.COMPLETED
    assert await deliveries(database, execution) == []


async def test_a_run_ended_where_it_runs_nowhere_gets_its_webhook_too(
    database: Database, tenant_a: Tenant
) -> None:
    execution = await new_execution(database, tenant_a)
    await RunRecords(database, Metrics()).end(
        execution, EventType.EXECUTION_CANCELLED, {"reason": "cancelled while queued"}
    )
    (delivery,) = await deliveries(database, execution)
    assert delivery.event_type == "execution.cancelled"
    assert delivery.payload["data"]["status"] == "cancelled"
    assert delivery.payload["data"]["error"]["code"] == "cancelled"

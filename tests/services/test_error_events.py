"""A run's failures as error occurrences (services/error_events.py), and the event log writer
that records them with the events (services/event_log.py), against the real schema.

Every node_failed is an occurrence; an execution_failed naming a node marks that node's final
failure as the one that ended the run instead of adding a second occurrence; one without a node
is an `execution` occurrence. The writer keeps a node's final failure back until the end of the
run has come, stores both in one transaction, and stores the events even when the occurrences
cannot be.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs
from support.storage import ACTOR

from agentflow_grpc.model.error_groups import ErrorKind
from agentflow_grpc.model.errors import UnavailableError
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.records import Execution, Tenant
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.services.error_events import RunFailures, awaits_the_end
from agentflow_grpc.services.event_log import EventLogWriter
from agentflow_grpc.services.run_records import RunRecords
from agentflow_grpc.storage import error_groups, executions
from agentflow_grpc.storage.database import Database

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
WORKFLOW = uuid.UUID(int=42)
EXECUTION = uuid.UUID(int=7)
FAILURES = RunFailures(EXECUTION, WORKFLOW, {"start": "input", "reply": "llm", "fetch": "http"})


def event(sequence: int, type: EventType, **fields: Any) -> ExecutionEvent:
    node_id = fields.pop("node_id", None)
    attempt = fields.pop("attempt", None)
    return ExecutionEvent(
        str(EXECUTION), sequence, T0 + timedelta(seconds=sequence), type, node_id, attempt, fields
    )


def node_failed(sequence: int, node_id: str, attempt: int, *, retry: bool) -> ExecutionEvent:
    return event(
        sequence,
        EventType.NODE_FAILED,
        node_id=node_id,
        attempt=attempt,
        code="provider.unavailable",
        message=f"HTTP 503: overloaded, try again in {attempt * 2} s",
        duration_ms=12.5,
        will_retry=retry,
    )


def run_failed(sequence: int, node_id: str | None = None, **error: Any) -> ExecutionEvent:
    error.setdefault("code", "provider.unavailable")
    error.setdefault("message", "HTTP 503: overloaded, try again in 4 s")
    if node_id is not None:
        error["node_id"] = node_id
    return event(sequence, EventType.EXECUTION_FAILED, error=error, usage={})


# --- which occurrences a batch holds ---


def test_every_attempt_counts_and_the_run_ending_failure_is_counted_once() -> None:
    events = [
        event(1, EventType.EXECUTION_STARTED),
        node_failed(2, "reply", 1, retry=True),
        node_failed(3, "reply", 2, retry=False),
        run_failed(4, "reply"),
    ]
    found = FAILURES.occurrences(events)

    assert [(o.kind, o.node_id, o.attempt, o.ended_execution) for o in found] == [
        (ErrorKind.NODE_ATTEMPT, "reply", 1, False),
        (ErrorKind.NODE_ATTEMPT, "reply", 2, True),
    ]
    assert {(o.code, o.node_type, o.execution_id, o.workflow_id) for o in found} == {
        ("provider.unavailable", "llm", EXECUTION, WORKFLOW)
    }
    assert found[0].fingerprint == found[1].fingerprint  # "in 2 s" and "in 4 s": one cause
    assert found[1].occurred_at == T0 + timedelta(seconds=3)


def test_a_run_failed_without_a_node_is_an_execution_occurrence() -> None:
    found = FAILURES.occurrences(
        [
            event(1, EventType.NODE_COMPLETED, node_id="reply", attempt=1, output={}),
            run_failed(2, code="execution.deadline_exceeded", message="took longer than 60 s"),
        ]
    )
    [only] = found
    assert (only.kind, only.code, only.node_type, only.node_id, only.ended_execution) == (
        ErrorKind.EXECUTION,
        "execution.deadline_exceeded",
        "",
        None,
        True,
    )
    assert only.message_pattern == "took longer than <duration>"


def test_a_named_node_without_its_final_failure_in_the_batch_is_still_one_occurrence() -> None:
    [only] = FAILURES.occurrences([run_failed(9, "fetch", code="http.rejected")])
    assert (only.kind, only.node_type, only.node_id, only.ended_execution) == (
        ErrorKind.EXECUTION,
        "http",
        "fetch",
        True,
    )


def test_a_batch_without_failures_has_no_occurrences_and_waits_for_nothing() -> None:
    events = [
        event(1, EventType.EXECUTION_STARTED),
        event(2, EventType.NODE_TOKEN, node_id="reply", attempt=1, text="hi"),
        event(3, EventType.EXECUTION_COMPLETED, outputs={}, usage={}),
    ]
    assert FAILURES.occurrences(events) == []
    assert not awaits_the_end(events)


def test_only_a_final_node_failure_without_the_end_after_it_waits() -> None:
    retried = node_failed(2, "reply", 1, retry=True)
    final = node_failed(3, "reply", 2, retry=False)
    assert not awaits_the_end([retried])
    assert awaits_the_end([retried, final])
    assert awaits_the_end([final, event(4, EventType.NODE_TOKEN, node_id="x", attempt=1)])
    assert not awaits_the_end([final, run_failed(4, "reply")])
    assert not awaits_the_end([final, None])  # the writer closing


# --- the writer ---


@pytest.fixture
async def execution(database: Database, tenant_a: Tenant) -> Execution:
    async with database.tenant(tenant_a.id) as connection:
        return await executions.create(
            connection, tenant_a.id, spec_hash="h", inputs={}, actor=ACTOR, inline_spec={}
        )


def writer_for(database: Database, execution: Execution) -> EventLogWriter:
    failures = RunFailures(execution.id, WORKFLOW, FAILURES.node_types)
    return EventLogWriter(
        database, execution.tenant_id, execution.id, metrics=Metrics(), failures=failures
    )


def of(execution: Execution, *events: ExecutionEvent) -> list[ExecutionEvent]:
    return [
        ExecutionEvent(
            str(execution.id), e.sequence, e.timestamp, e.type, e.node_id, e.attempt, e.data
        )
        for e in events
    ]


async def stored_sequence(database: Database, execution: Execution) -> int:
    async with database.tenant(execution.tenant_id) as connection:
        return (await executions.get(connection, execution.tenant_id, execution.id)).last_sequence


async def test_the_writer_stores_a_final_failure_with_the_end_of_the_run(
    database: Database, execution: Execution, owner: asyncpg.Connection
) -> None:
    writer = writer_for(database, execution)
    started, retried, final, ended = of(
        execution,
        event(1, EventType.EXECUTION_STARTED),
        node_failed(2, "reply", 1, retry=True),
        node_failed(3, "reply", 2, retry=False),
        run_failed(4, "reply"),
    )
    writer.put(started)
    writer.put(retried)
    for _ in range(100):  # a retried failure needs no waiting
        if await stored_sequence(database, execution) == 2:
            break
        await asyncio.sleep(0.02)
    assert await stored_sequence(database, execution) == 2
    assert await owner.fetchval("SELECT count(*) FROM error_occurrences") == 1

    writer.put(final)
    await asyncio.sleep(0.3)
    assert await stored_sequence(database, execution) == 2  # the final failure waits for the end
    assert await owner.fetchval("SELECT count(*) FROM error_occurrences") == 1

    writer.put(ended)
    await writer.close()

    assert await stored_sequence(database, execution) == 4
    rows = await owner.fetch(
        "SELECT attempt, ended_execution, execution_id, workflow_id FROM error_occurrences"
        " ORDER BY attempt"
    )
    assert [tuple(row) for row in rows] == [
        (1, False, execution.id, WORKFLOW),
        (2, True, execution.id, WORKFLOW),
    ]
    async with database.tenant(execution.tenant_id) as connection:
        [group] = (await error_groups.list_groups(connection, execution.tenant_id)).items
    assert (group.count, group.failed_execution_count, group.node_type) == (2, 1, "llm")


async def test_events_are_stored_even_when_their_occurrences_cannot_be(
    database: Database, execution: Execution, owner: asyncpg.Connection
) -> None:
    await owner.execute("REVOKE INSERT ON error_occurrences FROM agentflow_app")
    try:
        writer = writer_for(database, execution)
        for item in of(
            execution,
            event(1, EventType.EXECUTION_STARTED),
            node_failed(2, "reply", 1, retry=False),
            run_failed(3, "reply"),
        ):
            writer.put(item)
        await writer.close()
    finally:
        await owner.execute("GRANT INSERT ON error_occurrences TO agentflow_app")

    assert await stored_sequence(database, execution) == 3
    assert await owner.fetchval("SELECT count(*) FROM error_groups") == 0  # rolled back too
    assert await owner.fetchval("SELECT count(*) FROM error_occurrences") == 0


async def test_a_run_ended_where_it_ran_nowhere_is_an_execution_occurrence(
    database: Database, execution: Execution
) -> None:
    records = RunRecords(database, Metrics())
    await records.fail(execution, "execution.worker_lost", "taken up 3 times, lost each time")

    async with database.tenant(execution.tenant_id) as connection:
        [listed] = (await error_groups.list_groups(connection, execution.tenant_id)).items
        group = await error_groups.get_group(connection, execution.tenant_id, listed.fingerprint)
    assert (group.kind, group.code, group.node_type) == ("execution", "execution.worker_lost", "")
    assert group.message_pattern == "taken up <num> times, lost each time"
    assert (group.count, group.failed_execution_count) == (1, 1)
    [occurrence] = group.occurrences
    assert (occurrence.execution_id, occurrence.ended_execution) == (execution.id, True)


class _AckLostOnce:
    """The real database, except that the first transaction's commit is not acknowledged: it
    committed on the server, and the writer sees a lost connection (as when the network drops
    after COMMIT)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self.transactions = 0

    @contextlib.asynccontextmanager
    async def tenant(self, tenant_id: uuid.UUID) -> AsyncIterator[asyncpg.Connection]:
        self.transactions += 1
        async with self._database.tenant(tenant_id) as connection:
            yield connection
        if self.transactions == 1:
            raise UnavailableError("the database connection was lost: after COMMIT")


async def test_a_batch_whose_commit_was_not_acknowledged_is_not_stored_twice(
    database: Database, execution: Execution
) -> None:
    flaky = _AckLostOnce(database)
    writer = EventLogWriter(
        flaky,  # type: ignore[arg-type]
        execution.tenant_id,
        execution.id,
        metrics=Metrics(),
    )
    with capture_logs() as logs:
        for item in of(
            execution,
            event(1, EventType.EXECUTION_STARTED),
            event(2, EventType.EXECUTION_COMPLETED, usage={}),
        ):
            writer.put(item)
        await writer.close()

    assert flaky.transactions >= 2  # tried again, after the first "failed"
    assert await stored_sequence(database, execution) == 2
    async with database.tenant(execution.tenant_id) as connection:
        stored = await executions.list_events(connection, execution.tenant_id, execution.id)
    assert [e.sequence for e in stored] == [1, 2]  # each once
    retries = [entry for entry in logs if entry["event"] == "event_log.retry"]
    assert [entry["remaining"] for entry in retries] == [0]  # the log already had them

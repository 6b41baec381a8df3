"""The event log of an execution (storage/executions.py) against the real schema.

An append must continue the log exactly: the first batch starts at 1, each next one right after
the last stored event, with consecutive sequences inside the batch, and nothing after a
terminal event. What is refused raises EventLogError and stores nothing. The execution row
follows the events (pending, running, then completed, failed or cancelled with their outcome).
Stored events read back exactly as appended, and the table is append-only even to its owner;
the app role cannot delete executions at all.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, cast

import asyncpg
import pytest
from support.storage import ACTOR

from agentflow_grpc.model.errors import NotFoundError
from agentflow_grpc.model.events import EventType, ExecutionEvent, TokenUsage
from agentflow_grpc.model.records import Execution, ExecutionStatus, Tenant
from agentflow_grpc.storage import executions
from agentflow_grpc.storage.database import Connection, Database

EventLogError = executions.EventLogError
T0 = datetime(2026, 12, 1, 9, 30, 0, 123456, tzinfo=UTC)


def ev(
    execution: Execution,
    sequence: int,
    type: EventType = EventType.NODE_TOKEN,
    data: dict[str, Any] | None = None,
    *,
    node_id: str | None = "answer",
    attempt: int | None = 1,
) -> ExecutionEvent:
    node_level = type.value.startswith("node_")
    return ExecutionEvent(
        execution_id=str(execution.id),
        sequence=sequence,
        timestamp=T0 + timedelta(milliseconds=sequence),
        type=type,
        node_id=node_id if node_level else None,
        attempt=attempt if node_level else None,
        data={"text": f"token {sequence}"} if data is None else data,
    )


def started(execution: Execution, sequence: int = 1) -> ExecutionEvent:
    return ev(execution, sequence, EventType.EXECUTION_STARTED, {"workflow": "x"})


@pytest.fixture
async def execution(database: Database, tenant_a: Tenant) -> Execution:
    async with database.tenant(tenant_a.id) as c:
        return await executions.create(
            c, tenant_a.id, spec_hash="h", inputs={}, actor=ACTOR, inline_spec={"name": "x"}
        )


async def append(
    database: Database, tenant: Tenant, execution: Execution, events: list[ExecutionEvent]
) -> None:
    async with database.tenant(tenant.id) as c:
        await executions.append_events(c, tenant.id, execution.id, events)


async def reread(database: Database, tenant: Tenant, execution: Execution) -> Execution:
    async with database.tenant(tenant.id) as c:
        return await executions.get(c, tenant.id, execution.id)


async def stored_events(database: Database, tenant: Tenant, execution: Execution) -> list[Any]:
    async with database.tenant(tenant.id) as c:
        return await executions.list_events(c, tenant.id, execution.id)


async def stored_sequences(owner: asyncpg.Connection, execution: Execution) -> list[int]:
    rows = await owner.fetch(
        "SELECT sequence FROM execution_events WHERE execution_id = $1 ORDER BY sequence",
        execution.id,
    )
    return [row["sequence"] for row in rows]


# --- what an append may be ---


async def test_a_first_batch_that_does_not_start_at_1_is_a_gap_and_stores_nothing(
    database: Database, tenant_a: Tenant, execution: Execution, owner: asyncpg.Connection
) -> None:
    with pytest.raises(EventLogError, match="next must be 1, not 2"):
        await append(database, tenant_a, execution, [ev(execution, 2), ev(execution, 3)])

    assert await stored_sequences(owner, execution) == []
    after = await reread(database, tenant_a, execution)
    assert after.last_sequence == 0
    assert after.status is ExecutionStatus.PENDING


async def test_a_batch_that_skips_past_the_end_of_the_log_is_refused(
    database: Database, tenant_a: Tenant, execution: Execution, owner: asyncpg.Connection
) -> None:
    await append(database, tenant_a, execution, [started(execution), ev(execution, 2)])

    with pytest.raises(EventLogError, match="next must be 3, not 4"):
        await append(database, tenant_a, execution, [ev(execution, 4)])

    assert await stored_sequences(owner, execution) == [1, 2]
    assert (await reread(database, tenant_a, execution)).last_sequence == 2


@pytest.mark.parametrize("first", [1, 2], ids=["same-start", "overlapping"])
async def test_re_appending_stored_sequences_is_refused_and_keeps_the_original_events(
    database: Database,
    tenant_a: Tenant,
    execution: Execution,
    owner: asyncpg.Connection,
    first: int,
) -> None:
    original = [started(execution), ev(execution, 2, data={"text": "original"})]
    await append(database, tenant_a, execution, original)

    again = [ev(execution, sequence, data={"text": "again"}) for sequence in (first, first + 1)]
    with pytest.raises(EventLogError, match=f"next must be 3, not {first}"):
        await append(database, tenant_a, execution, again)

    assert await stored_events(database, tenant_a, execution) == original
    assert (await reread(database, tenant_a, execution)).last_sequence == 2


class NoSql:
    """A connection stand-in that fails the test on any use: proof no statement was sent."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"the append used the connection ({name}) before refusing")


@pytest.mark.parametrize(
    "sequences", [(1, 3), (2, 1), (1, 1), (1, 2, 4, 5)], ids=["skip", "reversed", "twice", "hole"]
)
async def test_non_consecutive_sequences_in_one_batch_are_refused_before_any_sql(
    execution: Execution, sequences: tuple[int, ...]
) -> None:
    batch = [ev(execution, sequence) for sequence in sequences]
    with pytest.raises(EventLogError, match="not consecutive"):
        await executions.append_events(
            cast(Connection, NoSql()), execution.tenant_id, execution.id, batch
        )


async def test_an_empty_batch_is_accepted_without_any_sql(execution: Execution) -> None:
    await executions.append_events(cast(Connection, NoSql()), execution.tenant_id, execution.id, [])


@pytest.mark.parametrize(
    ("terminal", "status"),
    [
        (EventType.EXECUTION_COMPLETED, ExecutionStatus.COMPLETED),
        (EventType.EXECUTION_FAILED, ExecutionStatus.FAILED),
        (EventType.EXECUTION_CANCELLED, ExecutionStatus.CANCELLED),
    ],
)
async def test_nothing_may_be_appended_after_a_terminal_event(
    database: Database,
    tenant_a: Tenant,
    execution: Execution,
    owner: asyncpg.Connection,
    terminal: EventType,
    status: ExecutionStatus,
) -> None:
    await append(database, tenant_a, execution, [started(execution), ev(execution, 2, terminal)])

    with pytest.raises(EventLogError, match=f"has ended \\({status.value}\\)"):
        await append(database, tenant_a, execution, [ev(execution, 3)])
    with pytest.raises(EventLogError, match="has ended"):
        await append(database, tenant_a, execution, [started(execution, 3)])

    assert await stored_sequences(owner, execution) == [1, 2]
    after = await reread(database, tenant_a, execution)
    assert after.status is status
    assert after.last_sequence == 2


async def test_a_batch_with_events_after_its_own_terminal_event_is_refused(
    database: Database, tenant_a: Tenant, execution: Execution, owner: asyncpg.Connection
) -> None:
    batch = [started(execution), ev(execution, 2, EventType.EXECUTION_COMPLETED), ev(execution, 3)]
    with pytest.raises(EventLogError):
        await append(database, tenant_a, execution, batch)
    assert await stored_sequences(owner, execution) == []


# --- the execution row follows the events ---


async def test_execution_started_moves_a_pending_execution_to_running(
    database: Database, tenant_a: Tenant, execution: Execution
) -> None:
    assert execution.status is ExecutionStatus.PENDING
    assert execution.started_at is None
    assert execution.last_sequence == 0

    first = started(execution)
    await append(database, tenant_a, execution, [first])

    running = await reread(database, tenant_a, execution)
    assert running.status is ExecutionStatus.RUNNING
    assert running.started_at == first.timestamp
    assert running.finished_at is None
    assert running.outputs is None
    assert running.error is None
    assert running.last_sequence == 1

    # Node events keep it running and leave started_at alone.
    await append(database, tenant_a, execution, [ev(execution, 2), ev(execution, 3)])
    still = await reread(database, tenant_a, execution)
    assert still.status is ExecutionStatus.RUNNING
    assert still.started_at == first.timestamp
    assert still.last_sequence == 3


USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}


@pytest.mark.parametrize(
    ("terminal", "data", "status", "outputs", "error"),
    [
        pytest.param(
            EventType.EXECUTION_COMPLETED,
            {"outputs": {"answer": "42", "items": [1, 2]}, "usage": USAGE, "duration_ms": 812.5},
            ExecutionStatus.COMPLETED,
            {"answer": "42", "items": [1, 2]},
            None,
            id="completed",
        ),
        pytest.param(
            EventType.EXECUTION_FAILED,
            {
                "error": {"code": "node_failed", "message": "answer: provider said 500"},
                "usage": USAGE,
                "duration_ms": 812.5,
            },
            ExecutionStatus.FAILED,
            None,
            {"code": "node_failed", "message": "answer: provider said 500"},
            id="failed",
        ),
        pytest.param(
            EventType.EXECUTION_CANCELLED,
            {"reason": "cancelled by operator:test", "usage": USAGE, "duration_ms": 812.5},
            ExecutionStatus.CANCELLED,
            None,
            {"code": "cancelled", "message": "cancelled by operator:test"},
            id="cancelled",
        ),
    ],
)
async def test_a_terminal_event_stores_the_outcome_on_the_execution(
    database: Database,
    tenant_a: Tenant,
    execution: Execution,
    terminal: EventType,
    data: dict[str, Any],
    status: ExecutionStatus,
    outputs: dict[str, Any] | None,
    error: dict[str, Any] | None,
) -> None:
    first = started(execution)
    await append(database, tenant_a, execution, [first, ev(execution, 2)])
    end = ev(execution, 3, terminal, data)
    await append(database, tenant_a, execution, [end])

    done = await reread(database, tenant_a, execution)
    assert done.status is status
    assert done.outputs == outputs
    assert done.error == error
    assert done.usage == TokenUsage(120, 30, 150)
    assert done.duration_ms == 812.5
    assert done.started_at == first.timestamp
    assert done.finished_at == end.timestamp
    assert done.last_sequence == 3


async def test_started_and_finished_in_one_batch_goes_straight_to_the_final_status(
    database: Database, tenant_a: Tenant, execution: Execution
) -> None:
    first = started(execution)
    end = ev(execution, 2, EventType.EXECUTION_COMPLETED, {"outputs": {"ok": True}})
    await append(database, tenant_a, execution, [first, end])

    done = await reread(database, tenant_a, execution)
    assert done.status is ExecutionStatus.COMPLETED
    assert (done.started_at, done.finished_at) == (first.timestamp, end.timestamp)
    assert done.outputs == {"ok": True}
    assert done.usage == TokenUsage()  # no usage reported: zeros, not NULLs
    assert done.duration_ms is None


# --- reading the log ---


async def test_list_events_after_a_sequence_returns_exactly_the_later_events_in_order(
    database: Database, tenant_a: Tenant, execution: Execution
) -> None:
    log = [started(execution), *(ev(execution, sequence) for sequence in range(2, 7))]
    for batch in (log[0:2], log[2:3], log[3:6]):
        await append(database, tenant_a, execution, batch)

    async with database.tenant(tenant_a.id) as c:
        for after in range(len(log) + 1):
            got = await executions.list_events(c, tenant_a.id, execution.id, after_sequence=after)
            assert got == log[after:], f"after_sequence={after}"
        assert (
            await executions.list_events(c, tenant_a.id, execution.id, after_sequence=2, limit=2)
            == log[2:4]
        )


async def test_list_events_of_an_execution_without_events_is_empty(
    database: Database, tenant_a: Tenant, execution: Execution
) -> None:
    assert await stored_events(database, tenant_a, execution) == []


async def test_list_events_of_an_unknown_or_foreign_execution_is_not_found(
    database: Database, tenant_a: Tenant, tenant_b: Tenant, execution: Execution
) -> None:
    await append(database, tenant_a, execution, [started(execution)])
    unknown = uuid.uuid4()
    async with database.tenant(tenant_a.id) as c:
        with pytest.raises(NotFoundError, match=str(unknown)):
            await executions.list_events(c, tenant_a.id, unknown)
    # Tenant A's execution does not exist for tenant B.
    async with database.tenant(tenant_b.id) as c:
        with pytest.raises(NotFoundError):
            await executions.list_events(c, tenant_b.id, execution.id)


async def test_event_data_round_trips_through_jsonb_unchanged(
    database: Database, tenant_a: Tenant, execution: Execution, owner: asyncpg.Connection
) -> None:
    data: dict[str, Any] = {
        "nested": {"list": [1, [2, [3, {"deep": True, "none": None}]]], "empty": {}, "nil": []},
        "unicode": "Grüße, 東京, עברית, e\u0301, zero\u200bwidth, 🚀👩‍💻",
        "escapes": 'back\\slash "quoted"\nnew line\ttab \u0001 </script>',
        "ключ 🔑": "a key that is not ASCII",
        "int64_max": 2**63 - 1,
        "beyond_int64": 2**63 + 1,
        "huge": 10**40 + 7,
        "negative_huge": -(2**70),
        "float": 0.1,
        "small_float": 1.5e-7,
        "negative_float": -12345.678,
        "bools": [True, False],
    }
    batch = [started(execution), ev(execution, 2, data=data, node_id="nœud-☃")]
    await append(database, tenant_a, execution, batch)

    stored = await stored_events(database, tenant_a, execution)
    assert stored == batch
    assert stored[1].data["huge"] == 10**40 + 7
    assert isinstance(stored[1].data["huge"], int)
    assert stored[1].node_id == "nœud-☃"
    # Stored as real jsonb (not a JSON string), so it can be queried in SQL.
    assert (
        await owner.fetchval(
            "SELECT data #>> '{nested,list,1,1,1,deep}' FROM execution_events "
            "WHERE execution_id = $1 AND sequence = 2",
            execution.id,
        )
        == "true"
    )


async def test_execution_inputs_and_outputs_round_trip_through_jsonb_unchanged(
    database: Database, tenant_a: Tenant
) -> None:
    inputs = {"question": "¿Qué tal? 🤔", "limit": 2**64, "filters": {"tags": ["a", "ü"]}}
    async with database.tenant(tenant_a.id) as c:
        created = await executions.create(
            c, tenant_a.id, spec_hash="h", inputs=inputs, actor=ACTOR, inline_spec={"name": "x"}
        )
    outputs = {"answer": "ça va", "scores": [0.25, 10**30]}
    end = ev(created, 2, EventType.EXECUTION_COMPLETED, {"outputs": outputs})
    await append(database, tenant_a, created, [started(created), end])

    done = await reread(database, tenant_a, created)
    assert done.inputs == inputs
    assert done.outputs == outputs


# --- what nobody may change ---


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE execution_events SET data = '{}' WHERE execution_id = $1",
        "DELETE FROM execution_events WHERE execution_id = $1",
    ],
    ids=["update", "delete"],
)
async def test_stored_events_cannot_be_changed_or_removed_even_by_the_owner(
    database: Database,
    tenant_a: Tenant,
    execution: Execution,
    owner: asyncpg.Connection,
    statement: str,
) -> None:
    batch = [started(execution), ev(execution, 2)]
    await append(database, tenant_a, execution, batch)
    assert await owner.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="never changed or removed"):
        await owner.execute(statement, execution.id)

    assert await stored_events(database, tenant_a, execution) == batch


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM executions WHERE id = $1",
        "DELETE FROM execution_events WHERE execution_id = $1",
        "UPDATE execution_events SET data = '{}' WHERE execution_id = $1",
    ],
    ids=["delete-execution", "delete-events", "update-events"],
)
async def test_the_app_role_may_not_delete_executions_nor_touch_their_events(
    database: Database,
    tenant_a: Tenant,
    execution: Execution,
    owner: asyncpg.Connection,
    statement: str,
) -> None:
    await append(database, tenant_a, execution, [started(execution)])

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        async with database.tenant(tenant_a.id) as c:
            await c.execute(statement, execution.id)

    assert await owner.fetchval("SELECT count(*) FROM executions WHERE id = $1", execution.id) == 1
    assert await stored_sequences(owner, execution) == [1]

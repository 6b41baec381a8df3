"""Failures of the database and of the code around it leave no partial writes behind.

A server session killed in the middle of a transaction (`pg_terminate_backend`, as an operator
or a failover would), an exception raised inside a transaction, and a server that cannot be
reached at all: the first two must store nothing of the interrupted work and leave the pool
usable, the last must surface as UnavailableError with a message a person can act on.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from support.network import closed_port
from support.storage import ACTOR, new_tenant

from agentflow_grpc.model.errors import UnavailableError
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.storage import executions, workflows
from agentflow_grpc.storage.database import Connection, Database

# What leaving the transaction raises once its server session is gone. Today that is asyncpg's
# InterfaceError ("cannot call Transaction.__aexit__(): the underlying connection is closed"):
# Database.tenant() maps only acquire failures to UnavailableError, not a loss mid-transaction.
CONNECTION_LOST = (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, UnavailableError)


@pytest.fixture
async def one_connection(migrated_dsn: str, owner: asyncpg.Connection) -> AsyncIterator[Database]:
    """A pool of a single connection: whatever follows a kill must run on its replacement."""
    database = await Database.connect(migrated_dsn, min_size=1, max_size=1, acquire_timeout=10)
    try:
        yield database
    finally:
        await database.close()


async def kill(owner: asyncpg.Connection, connection: Connection) -> None:
    """Terminate the server session behind `connection`, waiting (up to 5 s) until it is gone."""
    assert await owner.fetchval(
        "SELECT pg_terminate_backend($1, 5000)", connection.get_server_pid()
    )


def event(execution_id: uuid.UUID, sequence: int, type: EventType) -> ExecutionEvent:
    return ExecutionEvent(
        execution_id=str(execution_id),
        sequence=sequence,
        timestamp=datetime.now(UTC),
        type=type,
        data={"outputs": {"answer": 42}} if type is EventType.EXECUTION_COMPLETED else {},
    )


async def test_a_connection_killed_before_commit_stores_no_workflow_version_or_audit_entry(
    one_connection: Database, owner: asyncpg.Connection
) -> None:
    tenant = await new_tenant(one_connection, "victim")
    made: list[uuid.UUID] = []

    async def create_then_lose_the_connection() -> None:
        async with one_connection.tenant(tenant.id) as c:
            created = await workflows.create(
                c, tenant.id, name="wf", spec={"name": "wf"}, spec_hash="h", actor=ACTOR
            )
            made.append(created.id)
            # Visible inside the transaction: the writes were made, just not committed.
            assert (await workflows.get(c, tenant.id, created.id)).version == 1
            await kill(owner, c)

    with pytest.raises(CONNECTION_LOST):
        await create_then_lose_the_connection()

    assert len(made) == 1
    assert await owner.fetchval("SELECT count(*) FROM workflows") == 0
    assert await owner.fetchval("SELECT count(*) FROM workflow_versions") == 0
    assert await owner.fetchval("SELECT array_agg(action) FROM audit_log") == ["tenant.create"]


async def test_a_connection_killed_during_an_append_stores_no_events_and_keeps_the_status(
    one_connection: Database, owner: asyncpg.Connection
) -> None:
    tenant = await new_tenant(one_connection, "victim")
    async with one_connection.tenant(tenant.id) as c:
        execution = await executions.create(
            c, tenant.id, spec_hash="h", inputs={}, actor=ACTOR, inline_spec={"name": "x"}
        )
    batch = [
        event(execution.id, 1, EventType.EXECUTION_STARTED),
        event(execution.id, 2, EventType.EXECUTION_COMPLETED),
    ]

    async def append_then_lose_the_connection() -> None:
        async with one_connection.tenant(tenant.id) as c:
            await executions.append_events(c, tenant.id, execution.id, batch)
            assert (await executions.get(c, tenant.id, execution.id)).last_sequence == 2
            await kill(owner, c)

    with pytest.raises(CONNECTION_LOST):
        await append_then_lose_the_connection()

    row = await owner.fetchrow(
        "SELECT status, last_sequence, started_at, finished_at, outputs FROM executions "
        "WHERE id = $1",
        execution.id,
    )
    assert dict(row) == {
        "status": "pending",
        "last_sequence": 0,
        "started_at": None,
        "finished_at": None,
        "outputs": None,
    }
    assert await owner.fetchval("SELECT count(*) FROM execution_events") == 0

    # The log continues from where it really ends: the lost batch can be appended again.
    async with one_connection.tenant(tenant.id) as c:
        await executions.append_events(c, tenant.id, execution.id, batch)
        assert await executions.list_events(c, tenant.id, execution.id) == batch


async def test_the_pool_replaces_a_killed_connection_and_serves_the_next_transaction(
    one_connection: Database, owner: asyncpg.Connection
) -> None:
    tenant = await new_tenant(one_connection, "victim")
    killed: list[int] = []

    async def query_after_the_kill() -> None:
        async with one_connection.tenant(tenant.id) as c:
            killed.append(c.get_server_pid())
            await kill(owner, c)
            await c.fetchval("SELECT 1")

    with pytest.raises(CONNECTION_LOST):
        await query_after_the_kill()

    # The pool holds one connection at most, so this is necessarily the replacement.
    async with one_connection.tenant(tenant.id) as c:
        assert c.get_server_pid() != killed[0]
        created = await workflows.create(
            c, tenant.id, name="after", spec={"name": "after"}, spec_hash="h", actor=ACTOR
        )
    assert await owner.fetchval("SELECT name FROM workflows WHERE id = $1", created.id) == "after"
    assert await one_connection.ping() > 0
    assert not await owner.fetchval(
        "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", killed[0]
    )


class Boom(Exception):
    pass


async def test_an_exception_inside_a_transaction_rolls_back_everything_it_wrote(
    database: Database, owner: asyncpg.Connection
) -> None:
    tenant = await new_tenant(database, "careless")

    async def write_then_fail() -> None:
        async with database.tenant(tenant.id) as c:
            created = await workflows.create(
                c, tenant.id, name="wf", spec={"name": "wf"}, spec_hash="h", actor=ACTOR
            )
            await workflows.update(
                c,
                tenant.id,
                created.id,
                name="wf",
                spec={"name": "wf", "v": 2},
                spec_hash="h2",
                etag=created.etag,
                actor=ACTOR,
            )
            raise Boom

    with pytest.raises(Boom):
        await write_then_fail()

    assert await owner.fetchval("SELECT count(*) FROM workflows") == 0
    assert await owner.fetchval("SELECT count(*) FROM workflow_versions") == 0
    assert await owner.fetchval("SELECT array_agg(action) FROM audit_log") == ["tenant.create"]
    # The connection went back to the pool clean: no transaction, no tenant setting left on it.
    async with database.connection() as c:
        assert not c.is_in_transaction()
        assert await c.fetchval("SELECT current_setting('agentflow.tenant_id', true)") in (
            None,
            "",
        )


@pytest.mark.parametrize("kind", ["no-socket", "port-refused"])
async def test_an_unreachable_server_is_reported_as_unavailable(kind: str) -> None:
    if kind == "no-socket":
        dsn, where = "postgresql://postgres@/postgres?host=/nonexistent-dir", "/nonexistent-dir"
    else:
        port = closed_port()
        dsn, where = f"postgresql://postgres:pw@127.0.0.1:{port}/postgres", f"127.0.0.1:{port}"
    with pytest.raises(UnavailableError) as raised:
        await Database.connect(dsn)

    message = str(raised.value)
    prefix = f"cannot connect to PostgreSQL at {where}: "
    assert message.startswith(prefix)  # where it tried, never with the password
    assert len(message) > len(prefix)  # the reason follows
    assert "pw" not in message
    assert raised.value.code == "unavailable"
    # Reported as our error alone, not chained to asyncpg's or the OS's.
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__

"""Concurrent writers against the real database: optimistic concurrency and unique names hold.

Each writer runs in its own `database.tenant(...)` transaction on its own pooled connection, all
started together with `asyncio.gather`, so they really race inside PostgreSQL: the row locks
(`FOR UPDATE`), the unique index on live source names and the event log's
`last_sequence` check must let exactly one of them through and refuse the rest with the
documented error, leaving no trace of the losers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import pytest
from support.storage import ACTOR, new_tenant

from agentflow_grpc.model.errors import AlreadyExistsError, EtagMismatchError
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.records import Tenant
from agentflow_grpc.storage import audit, executions, sources, workflows
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database

WRITERS = 50

# workflows.get(lock=True) locks with `FOR UPDATE OF w` in a query that joins workflow_versions.
# A transaction that waited for that lock re-checks (READ COMMITTED) the newly committed workflow
# row against the version row of its own, older snapshot: `v.version = w.current_version` no
# longer holds, the row drops out, and get raises NotFoundError for a workflow that exists.
T = TypeVar("T")


@pytest.fixture
async def wide_database(migrated_dsn: str, owner: asyncpg.Connection) -> AsyncIterator[Database]:
    """A pool wide enough for many transactions to be open, and so contend, at once."""
    database = await Database.connect(migrated_dsn, min_size=1, max_size=20, acquire_timeout=60)
    try:
        yield database
    finally:
        await database.close()


async def race(attempts: list[Callable[[], Awaitable[T]]]) -> tuple[list[T], list[BaseException]]:
    """Run the attempts together; what succeeded, and what each failure raised."""
    results = await asyncio.gather(*(attempt() for attempt in attempts), return_exceptions=True)
    won = [result for result in results if not isinstance(result, BaseException)]
    lost = [result for result in results if isinstance(result, BaseException)]
    return won, lost


def spec(index: int) -> dict[str, Any]:
    return {"name": "wf", "nodes": [{"id": f"node-{index}", "type": "llm"}]}


def event(execution_id: uuid.UUID, sequence: int, writer: int) -> ExecutionEvent:
    return ExecutionEvent(
        execution_id=str(execution_id),
        sequence=sequence,
        timestamp=datetime.now(UTC),
        type=EventType.NODE_TOKEN if sequence > 1 else EventType.EXECUTION_STARTED,
        node_id="n" if sequence > 1 else None,
        attempt=1 if sequence > 1 else None,
        data={"writer": writer},
    )


async def test_concurrent_workflow_updates_with_one_etag_let_exactly_one_through(
    wide_database: Database, owner: asyncpg.Connection
) -> None:
    tenant = await new_tenant(wide_database, "racers")
    async with wide_database.tenant(tenant.id) as c:
        created = await workflows.create(
            c, tenant.id, name="wf", spec=spec(-1), spec_hash="h-initial", actor=ACTOR
        )

    def attempt(index: int) -> Callable[[], Awaitable[Any]]:
        async def update() -> Any:
            async with wide_database.tenant(tenant.id) as c:
                return await workflows.update(
                    c,
                    tenant.id,
                    created.id,
                    name="wf",
                    spec=spec(index),
                    spec_hash=f"h-{index}",
                    etag=created.etag,
                    actor=ACTOR,
                )

        return update

    won, lost = await race([attempt(index) for index in range(WRITERS)])

    assert len(won) == 1, f"expected one winner, got {len(won)}; failures: {lost[:3]!r}"
    assert len(lost) == WRITERS - 1
    assert all(isinstance(error, EtagMismatchError) for error in lost), {
        type(error).__name__ for error in lost
    }
    winner = won[0]
    async with wide_database.tenant(tenant.id) as c:
        stored = await workflows.get(c, tenant.id, created.id)
        versions = await workflows.list_versions(c, tenant.id, created.id)
        updates = [
            entry
            for entry in await audit.list_entries(
                c, tenant.id, resource_type="workflow", resource_id=created.id
            )
            if entry.action == "workflow.update"
        ]
    assert stored.version == 2
    assert stored.revision == created.revision + 1
    assert stored.spec == winner.spec
    assert stored.spec_hash == winner.spec_hash
    assert [version.version for version in versions.items] == [2, 1]
    assert len(updates) == 1
    assert updates[0].details == {"version": 2}
    assert (
        await owner.fetchval(
            "SELECT count(*) FROM workflow_versions WHERE workflow_id = $1", created.id
        )
        == 2
    )


async def wait_until_blocked_by(owner: asyncpg.Connection, holder_pid: int) -> int:
    """The pid of the session waiting for a lock `holder_pid` holds, once there is one.

    PostgreSQL offers nothing to wait on, so this polls `pg_blocking_pids` (bounded: 10 s).
    """
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        waiter = await owner.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))", holder_pid
        )
        if waiter is not None:
            return int(waiter)
        assert asyncio.get_running_loop().time() < deadline, "no session blocked on the lock"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("waiter", ["update-with-stale-etag", "delete-with-stale-etag", "update"])
async def test_a_workflow_change_that_waited_for_the_row_lock_sees_the_committed_change(
    wide_database: Database, owner: asyncpg.Connection, waiter: str
) -> None:
    """Deterministic form of the race: the second writer is seen blocked before the first commits.

    A stale etag must give EtagMismatchError, and a change without an etag must apply on top of
    the one it waited for; neither may report the workflow as missing.
    """
    tenant = await new_tenant(wide_database, "racers")
    async with wide_database.tenant(tenant.id) as c:
        created = await workflows.create(
            c, tenant.id, name="wf", spec=spec(0), spec_hash="h-0", actor=ACTOR
        )

    async def second_writer() -> Any:
        async with wide_database.tenant(tenant.id) as c:
            if waiter == "delete-with-stale-etag":
                return await workflows.delete(
                    c, tenant.id, created.id, etag=created.etag, actor=ACTOR
                )
            return await workflows.update(
                c,
                tenant.id,
                created.id,
                name="wf",
                spec=spec(2),
                spec_hash="h-2",
                etag=created.etag if waiter == "update-with-stale-etag" else None,
                actor=ACTOR,
            )

    async with wide_database.tenant(tenant.id) as first:
        await workflows.update(
            first,
            tenant.id,
            created.id,
            name="wf",
            spec=spec(1),
            spec_hash="h-1",
            etag=created.etag,
            actor=ACTOR,
        )
        second = asyncio.create_task(second_writer())
        await wait_until_blocked_by(owner, first.get_server_pid())
    # The first transaction has committed; the second now gets the lock.

    if waiter == "update":
        applied = await second
        assert applied.version == 3
        assert applied.spec_hash == "h-2"
    else:
        with pytest.raises(EtagMismatchError):
            await second
        assert await owner.fetchval(
            "SELECT deleted_at IS NULL FROM workflows WHERE id = $1", created.id
        )


async def test_concurrent_source_updates_with_one_etag_let_exactly_one_through(
    wide_database: Database, owner: asyncpg.Connection, keyring: Keyring
) -> None:
    tenant = await new_tenant(wide_database, "racers")
    async with wide_database.tenant(tenant.id) as c:
        created = await sources.create(
            c,
            tenant.id,
            keyring,
            name="db",
            type="postgres",
            config={"writer": None},
            secrets={"password": "initial"},
            actor=ACTOR,
        )

    def attempt(index: int) -> Callable[[], Awaitable[Any]]:
        async def update() -> Any:
            async with wide_database.tenant(tenant.id) as c:
                return await sources.update(
                    c,
                    tenant.id,
                    created.id,
                    keyring,
                    etag=created.etag,
                    actor=ACTOR,
                    config={"writer": index},
                    secrets={"password": f"secret-{index}"},
                )

        return update

    won, lost = await race([attempt(index) for index in range(WRITERS)])

    assert len(won) == 1, f"expected one winner, got {len(won)}; failures: {lost[:3]!r}"
    assert len(lost) == WRITERS - 1
    assert all(isinstance(error, EtagMismatchError) for error in lost), {
        type(error).__name__ for error in lost
    }
    winner_index = won[0].config["writer"]
    async with wide_database.tenant(tenant.id) as c:
        stored = await sources.get(c, tenant.id, created.id)
        definitions = await sources.definitions(c, tenant.id, keyring)
        updates = [
            entry
            for entry in await audit.list_entries(
                c, tenant.id, resource_type="source", resource_id=created.id
            )
            if entry.action == "source.update"
        ]
    assert stored.revision == created.revision + 1
    assert stored.config == {"writer": winner_index}
    # The secrets stored are the winner's too: no loser's half-write slipped in.
    assert [d.secrets["password"].get_secret_value() for d in definitions] == [
        f"secret-{winner_index}"
    ]
    assert len(updates) == 1


async def test_concurrent_creates_of_one_source_name_keep_one_and_refuse_the_rest(
    wide_database: Database, owner: asyncpg.Connection, keyring: Keyring
) -> None:
    tenant = await new_tenant(wide_database, "racers")
    other = await new_tenant(wide_database, "others")

    def attempt(in_tenant: Tenant, index: int) -> Callable[[], Awaitable[Any]]:
        async def create() -> Any:
            async with wide_database.tenant(in_tenant.id) as c:
                return await sources.create(
                    c,
                    in_tenant.id,
                    keyring,
                    name="shared-name",
                    type="http",
                    config={"writer": index},
                    secrets={},
                    actor=ACTOR,
                )

        return create

    won, lost = await race([attempt(tenant, index) for index in range(WRITERS)])

    assert len(won) == 1, f"expected one winner, got {len(won)}; failures: {lost[:3]!r}"
    assert len(lost) == WRITERS - 1
    assert all(isinstance(error, AlreadyExistsError) for error in lost), {
        type(error).__name__ for error in lost
    }
    rows = await owner.fetch("SELECT id, tenant_id FROM sources")
    assert [(row["id"], row["tenant_id"]) for row in rows] == [(won[0].id, tenant.id)]
    assert (
        await owner.fetchval(
            "SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = 'source.create'",
            tenant.id,
        )
        == 1
    )

    # The name is taken within the tenant only.
    in_other = await attempt(other, 0)()
    assert in_other.name == "shared-name"
    assert in_other.tenant_id == other.id


async def test_concurrent_appends_at_one_sequence_store_exactly_one_batch(
    wide_database: Database, owner: asyncpg.Connection
) -> None:
    tenant = await new_tenant(wide_database, "racers")
    async with wide_database.tenant(tenant.id) as c:
        execution = await executions.create(
            c, tenant.id, spec_hash="h", inputs={}, actor=ACTOR, inline_spec={"name": "x"}
        )

    def attempt(writer: int) -> Callable[[], Awaitable[int]]:
        async def append() -> int:
            batch = [event(execution.id, sequence, writer) for sequence in (1, 2, 3)]
            async with wide_database.tenant(tenant.id) as c:
                await executions.append_events(c, tenant.id, execution.id, batch)
            return writer

        return append

    won, lost = await race([attempt(writer) for writer in range(WRITERS)])

    assert len(won) == 1, f"expected one winner, got {len(won)}; failures: {lost[:3]!r}"
    assert len(lost) == WRITERS - 1
    assert all(isinstance(error, executions.EventLogError) for error in lost), {
        type(error).__name__ for error in lost
    }
    rows = await owner.fetch(
        "SELECT sequence, (data->>'writer')::int AS writer FROM execution_events "
        "WHERE execution_id = $1 ORDER BY sequence",
        execution.id,
    )
    assert [row["sequence"] for row in rows] == [1, 2, 3]
    assert {row["writer"] for row in rows} == {won[0]}
    assert (
        await owner.fetchval("SELECT last_sequence FROM executions WHERE id = $1", execution.id)
        == 3
    )


async def test_writers_racing_to_extend_one_log_leave_it_without_gaps_or_duplicates(
    wide_database: Database, owner: asyncpg.Connection
) -> None:
    """Each writer reads where the log ends and appends there, retrying when it lost the race."""
    tenant = await new_tenant(wide_database, "racers")
    async with wide_database.tenant(tenant.id) as c:
        execution = await executions.create(
            c, tenant.id, spec_hash="h", inputs={}, actor=ACTOR, inline_spec={"name": "x"}
        )
    writers, appends_each = 10, 5
    refused = 0

    async def writer(index: int) -> None:
        nonlocal refused
        stored = 0
        while stored < appends_each:
            async with wide_database.tenant(tenant.id) as c:
                end = (await executions.get(c, tenant.id, execution.id)).last_sequence
            try:
                async with wide_database.tenant(tenant.id) as c:
                    await executions.append_events(
                        c, tenant.id, execution.id, [event(execution.id, end + 1, index)]
                    )
            except executions.EventLogError:
                refused += 1
            else:
                stored += 1

    await asyncio.gather(*(writer(index) for index in range(writers)))

    total = writers * appends_each
    rows = await owner.fetch(
        "SELECT sequence, (data->>'writer')::int AS writer FROM execution_events "
        "WHERE execution_id = $1 ORDER BY sequence",
        execution.id,
    )
    assert [row["sequence"] for row in rows] == list(range(1, total + 1))
    assert (
        await owner.fetchval("SELECT last_sequence FROM executions WHERE id = $1", execution.id)
        == total
    )
    per_writer = [row["writer"] for row in rows]
    assert {index: per_writer.count(index) for index in range(writers)} == dict.fromkeys(
        range(writers), appends_each
    )
    # Every refusal was a lost race, retried: the refused appends left nothing behind.
    assert len(rows) == total

"""Error groups in PostgreSQL (storage/error_groups.py, migration 0005): occurrences counted into
their groups in the caller's transaction; groups listed newest first with page tokens and
filters, read with their latest occurrences and the workflows they affected, counted over a
window; each tenant sees its own only; occurrences are append-only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from agentflow_grpc.model.error_groups import ErrorKind, NewOccurrence
from agentflow_grpc.model.errors import InvalidArgumentError, NotFoundError
from agentflow_grpc.model.records import Tenant
from agentflow_grpc.storage import error_groups
from agentflow_grpc.storage.database import Database

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
WF1, WF2, WF3 = (uuid.UUID(int=n) for n in (1, 2, 3))


def attempt(
    minute: int,
    message: str = "HTTP 429: slow down, retry in 20 s",
    *,
    code: str = "provider.rate_limited",
    workflow_id: uuid.UUID | None = WF1,
    ended: bool = False,
    execution_id: uuid.UUID | None = None,
) -> NewOccurrence:
    return NewOccurrence(
        kind=ErrorKind.NODE_ATTEMPT,
        code=code,
        message=message,
        occurred_at=T0 + timedelta(minutes=minute),
        node_type="llm",
        execution_id=execution_id or uuid.uuid4(),
        workflow_id=workflow_id,
        node_id="reply",
        attempt=1,
        ended_execution=ended,
    )


def internal(minute: int, stack: str) -> NewOccurrence:
    return NewOccurrence(
        kind=ErrorKind.INTERNAL,
        code="internal",
        message="RuntimeError: boom",
        occurred_at=T0 + timedelta(minutes=minute),
        method="/agentflow.v1.WorkflowService/GetWorkflow",
        stack=stack,
    )


async def record(database: Database, tenant: Tenant, *occurrences: NewOccurrence) -> None:
    async with database.tenant(tenant.id) as connection:
        await error_groups.record(connection, tenant.id, occurrences)


async def test_occurrences_count_into_one_group_per_cause(
    database: Database, tenant_a: Tenant
) -> None:
    await record(
        database,
        tenant_a,
        attempt(5, "HTTP 429: slow down, retry in 20 s", workflow_id=WF1),
        attempt(1, "HTTP 429: slow down, retry in 3 s", workflow_id=WF2),
    )
    await record(
        database,
        tenant_a,
        attempt(9, "HTTP 429: slow down, retry in 7.5 s", workflow_id=WF1, ended=True),
        attempt(3, "HTTP 429: slow down, retry in 1 s", workflow_id=None),
    )
    first = attempt(0)
    async with database.tenant(tenant_a.id) as connection:
        group = await error_groups.get_group(connection, tenant_a.id, first.fingerprint)

    assert (group.code, group.node_type, group.kind) == (
        "provider.rate_limited",
        "llm",
        "node_attempt",
    )
    assert group.message_pattern == "HTTP 429: slow down, retry in <duration>"
    assert group.count == 4
    assert group.failed_execution_count == 1
    assert (group.first_seen_at, group.last_seen_at) == (
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=9),
    )
    assert group.sample_message == "HTTP 429: slow down, retry in 7.5 s"  # the latest's
    assert group.stack == ""
    assert (group.workflow_ids, group.workflow_count) == ((WF1, WF2), 2)  # latest affected first
    minutes = [int((item.occurred_at - T0).total_seconds() // 60) for item in group.occurrences]
    assert minutes == [9, 5, 3, 1]
    latest = group.occurrences[0]
    assert (latest.kind, latest.node_id, latest.attempt, latest.ended_execution) == (
        ErrorKind.NODE_ATTEMPT,
        "reply",
        1,
        True,
    )
    assert latest.workflow_id == WF1
    assert latest.message == "HTTP 429: slow down, retry in 7.5 s"


async def test_a_group_keeps_its_latest_20_occurrences_and_the_latest_internal_stack(
    database: Database, tenant_a: Tenant
) -> None:
    await record(database, tenant_a, *(attempt(minute) for minute in range(25)))
    await record(
        database, tenant_a, internal(1, "Traceback: first"), internal(2, "Traceback: second")
    )
    await record(database, tenant_a, internal(0, "Traceback: older than the group's last"))
    async with database.tenant(tenant_a.id) as connection:
        attempts = await error_groups.get_group(connection, tenant_a.id, attempt(0).fingerprint)
        crashes = await error_groups.get_group(connection, tenant_a.id, internal(0, "").fingerprint)

    assert attempts.count == 25
    assert len(attempts.occurrences) == error_groups.LATEST_OCCURRENCES == 20
    assert attempts.occurrences[0].occurred_at == T0 + timedelta(minutes=24)
    assert crashes.count == 3
    assert (crashes.kind, crashes.node_type, crashes.stack) == ("internal", "", "Traceback: second")
    assert crashes.first_seen_at == T0
    assert crashes.occurrences[0].method == "/agentflow.v1.WorkflowService/GetWorkflow"
    assert (crashes.workflow_ids, crashes.workflow_count) == ((), 0)


async def test_groups_are_listed_most_recently_seen_first_page_by_page(
    database: Database, tenant_a: Tenant
) -> None:
    messages = [f"failure number {word}" for word in ("one", "two", "three", "four", "five")]
    for minute, message in enumerate(messages):
        await record(database, tenant_a, attempt(minute, message, code=f"code.{minute % 2}"))
    await record(database, tenant_a, attempt(-1, messages[0], code="code.0"))  # an older one

    listed, token = [], ""
    async with database.tenant(tenant_a.id) as connection:
        while True:
            page = await error_groups.list_groups(connection, tenant_a.id, size=2, token=token)
            listed += page.items
            token = page.next_page_token
            if not token:
                break
        evens = await error_groups.list_groups(connection, tenant_a.id, code="code.0")
        recent = await error_groups.list_groups(
            connection, tenant_a.id, last_seen_after=T0 + timedelta(minutes=3)
        )
        first_page = await error_groups.list_groups(connection, tenant_a.id, size=2)

    assert [group.sample_message for group in listed] == list(reversed(messages))
    assert all(group.occurrences == () for group in listed)
    assert (listed[-1].count, listed[-1].first_seen_at) == (2, T0 - timedelta(minutes=1))
    assert [group.sample_message for group in evens.items] == messages[::-2]
    assert [group.sample_message for group in recent.items] == [messages[4], messages[3]]
    async with database.tenant(tenant_a.id) as connection:
        with pytest.raises(InvalidArgumentError) as refused:
            await error_groups.list_groups(
                connection, tenant_a.id, size=2, token=first_page.next_page_token, code="code.1"
            )
    assert refused.value.field == "page_token"


async def test_ties_on_last_seen_are_paged_by_fingerprint_without_loss(
    database: Database, tenant_a: Tenant
) -> None:
    occurrences = [attempt(0, f"failure {word}") for word in ("a", "b", "c", "d", "e")]
    await record(database, tenant_a, *occurrences)
    seen, token = [], ""
    async with database.tenant(tenant_a.id) as connection:
        while True:
            page = await error_groups.list_groups(connection, tenant_a.id, size=2, token=token)
            seen += [group.fingerprint for group in page.items]
            token = page.next_page_token
            if not token:
                break
    assert seen == sorted(item.fingerprint for item in occurrences)


async def test_top_groups_count_the_occurrences_of_a_window(
    database: Database, tenant_a: Tenant
) -> None:
    await record(
        database, tenant_a, *(attempt(minute, "often", workflow_id=WF1) for minute in range(5))
    )
    await record(
        database, tenant_a, *(attempt(20 + m, "lately", workflow_id=WF2) for m in range(3))
    )
    await record(database, tenant_a, attempt(21, "lately", workflow_id=WF3, ended=True))
    await record(database, tenant_a, attempt(22, "once"))
    async with database.tenant(tenant_a.id) as connection:
        top = await error_groups.top_groups(connection, tenant_a.id, T0 + timedelta(minutes=3), 2)

    assert [(group.sample_message, group.count) for group in top] == [("lately", 4), ("often", 2)]
    lately, often = top
    assert (lately.failed_execution_count, lately.workflow_count) == (1, 2)
    assert set(lately.workflow_ids) == {WF2, WF3}
    assert (often.failed_execution_count, often.workflow_ids) == (0, (WF1,))
    assert often.first_seen_at == T0  # the group's own times


async def test_a_tenant_sees_only_its_own_groups(
    database: Database, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    occurrence = attempt(0)
    await record(database, tenant_a, occurrence)
    await record(database, tenant_b, attempt(1), attempt(2))
    async with database.tenant(tenant_b.id) as connection:
        mine = await error_groups.get_group(connection, tenant_b.id, occurrence.fingerprint)
        # Asking with the other tenant's id inside this tenant's transaction finds nothing.
        listed = await error_groups.list_groups(connection, tenant_a.id)
        top = await error_groups.top_groups(connection, tenant_a.id, T0, 5)
    async with database.tenant(tenant_a.id) as connection:
        theirs = await error_groups.get_group(connection, tenant_a.id, occurrence.fingerprint)
    assert (mine.count, theirs.count) == (2, 1)
    assert (listed.items, top) == ([], [])
    async with database.tenant(tenant_b.id) as connection:
        with pytest.raises(NotFoundError):
            await error_groups.get_group(connection, tenant_b.id, "0" * 32)


async def test_occurrences_are_append_only_even_to_the_owner(
    database: Database, tenant_a: Tenant, owner: asyncpg.Connection
) -> None:
    await record(database, tenant_a, attempt(0))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="never changed"):
        await owner.execute("UPDATE error_occurrences SET message = 'changed'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="never changed"):
        await owner.execute("DELETE FROM error_occurrences")
    async with database.tenant(tenant_a.id) as connection:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("DELETE FROM error_groups")


async def test_a_recording_rolled_back_with_its_transaction_leaves_nothing(
    database: Database, tenant_a: Tenant, owner: asyncpg.Connection
) -> None:
    async def record_then_fail() -> None:
        async with database.tenant(tenant_a.id) as connection:
            await error_groups.record(connection, tenant_a.id, [attempt(0)])
            raise RuntimeError("the events' append failed")

    with pytest.raises(RuntimeError):
        await record_then_fail()
    assert await owner.fetchval("SELECT count(*) FROM error_groups") == 0
    assert await owner.fetchval("SELECT count(*) FROM error_occurrences") == 0

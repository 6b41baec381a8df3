"""Revision 0008 (the audit chain) on databases of its own: rows written before it are chained
by the upgrade exactly as the runtime chains them, and the downgrade gives 0007's table back.

The generic up/down/up round trip of every revision is in test_migrations.py; this file checks
what is particular to 0008: the chain computed, the trigger back on, the grants, and what the
downgrade must drop (the system's chain, which has no tenant).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from support.storage import create_database, new_tenant

from agentflow_grpc.model.audit_origin import AuditOrigin, set_origin
from agentflow_grpc.services.audit import AuditService
from agentflow_grpc.storage import migrations
from agentflow_grpc.storage.database import APP_ROLE, Database

BEFORE, REVISION = "0007", "0008"
CHAIN_COLUMNS = {
    "request_id",
    "trace_id",
    "source_address",
    "outcome",
    "chain_seq",
    "prev_hash",
    "row_hash",
}
START = datetime(2026, 11, 30, 23, 59, 58, 123456, tzinfo=UTC)


@pytest.fixture
async def dsn(postgres_dsn: str) -> str:
    return await create_database(postgres_dsn, prefix="audit")


@pytest.fixture
async def owner(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def runtime(dsn: str) -> Database:
    return await Database.connect(dsn, min_size=1, max_size=2, acquire_timeout=10)


async def columns(owner: asyncpg.Connection) -> set[str]:
    rows = await owner.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'audit_log'"
    )
    return {row["column_name"] for row in rows}


async def assert_append_only(owner: asyncpg.Connection) -> None:
    """The trigger is on for everyone, and the app role holds SELECT and INSERT only."""
    assert (
        await owner.fetchval(
            "SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'audit_log_append_only'"
        )
        == "O"
    )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="never changed or removed"):
        await owner.execute("UPDATE audit_log SET actor = 'x'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="never changed or removed"):
        await owner.execute("DELETE FROM audit_log")
    granted = await owner.fetch(
        """
        SELECT privilege FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'])
            AS privilege
        WHERE has_table_privilege($1, 'audit_log', privilege)
        """,
        APP_ROLE,
    )
    assert {row["privilege"] for row in granted} == {"SELECT", "INSERT"}


async def test_the_upgrade_chains_the_rows_written_before_it(
    dsn: str, owner: asyncpg.Connection
) -> None:
    await migrations.upgrade(dsn, BEFORE)
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    await owner.execute(
        "INSERT INTO tenants (id, name) VALUES ($1, 'old-a'), ($2, 'old-b')", tenant_a, tenant_b
    )
    # As 0007's runtime wrote them: interleaved tenants, times of now(), details of any shape.
    written = [
        (tenant_a, "tenant.create", {}),
        (tenant_b, "tenant.create", {}),
        (tenant_a, "workflow.create", {"name": "ünïcode ✓", "n": 1e20}),
        (tenant_a, "source.reseal", {"from_key": "k1", "to_key": "k2", "nested": {"b": [1.5]}}),
        (tenant_b, "api_key.create", {"role": "admin"}),
    ]
    for index, (tenant_id, action, details) in enumerate(written):
        await owner.execute(
            """
            INSERT INTO audit_log (tenant_id, occurred_at, actor, action, resource_type,
                                   resource_id, before_hash, after_hash, details)
            VALUES ($1, $2, 'operator:cli', $3, 'thing', $4, NULL, $5, $6::jsonb)
            """,
            tenant_id,
            START + timedelta(microseconds=index * 1001),
            action,
            f"r{index}",
            f"{index:064x}",
            json.dumps(details),
        )
    assert not CHAIN_COLUMNS & await columns(owner)

    assert (await migrations.upgrade(dsn, REVISION)).current == REVISION

    rows = await owner.fetch(
        "SELECT tenant_id, action, chain_seq, outcome, request_id FROM audit_log ORDER BY id"
    )
    assert [(row["tenant_id"], row["chain_seq"]) for row in rows] == [
        (tenant_a, 1),
        (tenant_b, 1),
        (tenant_a, 2),
        (tenant_a, 3),
        (tenant_b, 2),
    ]
    assert {(row["outcome"], row["request_id"]) for row in rows} == {("ok", None)}
    await assert_append_only(owner)
    database = await runtime(dsn)
    try:
        service = AuditService(database)
        report = await service.verify()
        assert report.ok, report
        assert [(chain.tenant_id, chain.rows) for chain in report.chains] == sorted(
            [(tenant_a, 3), (tenant_b, 2)], key=lambda pair: str(pair[0])
        )
        # The runtime continues the migrated chain.
        head_a = next(chain for chain in report.chains if chain.tenant_id == tenant_a)
        await service.record(
            tenant_a,
            actor="api_key:1",
            action="thing.after",
            resource_type="thing",
            resource_id="r9",
            outcome="ok",
        )
        (newest,), _ = await service.list_events(tenant_a, page_size=1)
        assert (newest.chain_seq, newest.prev_hash) == (4, head_a.head_hash)
        assert (await service.verify()).ok
    finally:
        await database.close()


async def test_the_downgrade_restores_0007_and_a_new_upgrade_chains_again(
    dsn: str, owner: asyncpg.Connection
) -> None:
    await migrations.upgrade(dsn, REVISION)
    database = await runtime(dsn)
    try:
        quiet, busy = await new_tenant(database, "quiet"), await new_tenant(database, "busy")
        service = AuditService(database)
        for index in range(3):
            await service.record(
                quiet.id,
                actor="api_key:1",
                action="thing.change",
                resource_type="thing",
                resource_id=f"q{index}",
                outcome="ok",
                details={"index": index},
            )
        set_origin(AuditOrigin("req-1", "0af7651916cd43dd8448eb211c80319c", "ipv4:10.0.0.1:1"))
        try:
            await service.record(
                busy.id,
                actor="api_key:2",
                action="thing.refused",
                resource_type="thing",
                resource_id="b0",
                outcome="permission_denied",
            )
        finally:
            set_origin(None)
        await service.record(
            None,
            actor="anonymous",
            action="auth.refused",
            resource_type="credential",
            resource_id="none",
            outcome="unauthenticated",
        )
        hashes_before = await hashes_of(owner, quiet.id)
    finally:
        await database.close()

    assert (await migrations.downgrade(dsn, BEFORE)).current == BEFORE

    assert not CHAIN_COLUMNS & await columns(owner)
    assert await owner.fetchval("SELECT count(*) FROM audit_log") == 4 + 2  # system's row gone
    assert await owner.fetchval(
        "SELECT attnotnull FROM pg_attribute"
        " WHERE attrelid = 'audit_log'::regclass AND attname = 'tenant_id'"
    )
    assert (
        await owner.fetchval(
            "SELECT attidentity::text FROM pg_attribute"
            " WHERE attrelid = 'audit_log'::regclass AND attname = 'id'"
        )
        == "a"
    )
    assert not await owner.fetchval(
        "SELECT has_sequence_privilege($1, 'audit_log_id_seq', 'USAGE')", APP_ROLE
    )
    await assert_append_only(owner)

    assert (await migrations.upgrade(dsn, REVISION)).current == REVISION
    # The same rows hash the same as before (nothing of theirs was lost); the row whose origin
    # the downgrade dropped is chained as it now is.
    assert await hashes_of(owner, quiet.id) == hashes_before
    database = await runtime(dsn)
    try:
        report = await AuditService(database).verify()
    finally:
        await database.close()
    assert report.ok
    assert {(chain.tenant_id, chain.rows) for chain in report.chains} == {
        (quiet.id, 4),
        (busy.id, 2),
    }


async def hashes_of(owner: asyncpg.Connection, tenant_id: uuid.UUID) -> list[str]:
    rows = await owner.fetch(
        "SELECT row_hash FROM audit_log WHERE tenant_id = $1 ORDER BY chain_seq", tenant_id
    )
    return [row["row_hash"] for row in rows]

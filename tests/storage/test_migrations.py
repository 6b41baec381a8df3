"""The Alembic revisions against a real PostgreSQL: up, down and up again, empty and filled.

Every test makes its own database (`create_database`) in the session's embedded server, so the
schema changes here never touch `migrated_dsn`. The chain of revisions is read from Alembic's
script directory: a new revision in `migrations/versions/` is covered without editing this file.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from support.storage import ACTOR, TABLES, create_database

from agentflow_grpc.model.error_groups import ErrorKind, NewOccurrence
from agentflow_grpc.model.errors import ConfigurationError
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.records import Role
from agentflow_grpc.storage import (
    error_groups,
    executions,
    migrations,
    sources,
    tenants,
    webhooks,
    workflows,
)
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import APP_ROLE, Database

FUNCTIONS = ("agentflow_visible", "agentflow_forbid_change")


def revision_chain() -> list[str]:
    """Every revision id, oldest first."""
    script = ScriptDirectory.from_config(migrations.alembic_config())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def down_revision_of(revision: str) -> str:
    script = ScriptDirectory.from_config(migrations.alembic_config())
    down = script.get_revision(revision).down_revision
    assert down is None or isinstance(down, str), f"{revision}: merge revisions are not handled"
    return down or "base"


REVISIONS = revision_chain()


def keyring() -> Keyring:
    return Keyring([("k1", base64.b64decode(Keyring.generate_key()))])


async def fill(dsn: str, name: str = "filled") -> uuid.UUID:
    """One of everything, through the repositories, as the runtime role; the tenant's id."""
    database = await Database.connect(dsn, min_size=1, max_size=2, acquire_timeout=10)
    try:
        async with database.system() as connection:
            tenant = await tenants.create_tenant(connection, name, actor=ACTOR)
            await tenants.create_api_key(connection, tenant.id, role=Role.EDITOR, actor=ACTOR)
        async with database.tenant(tenant.id) as connection:
            created = await workflows.create(
                connection,
                tenant.id,
                name="wf",
                spec={"name": "wf", "nodes": []},
                spec_hash="h1",
                actor=ACTOR,
            )
            updated = await workflows.update(
                connection,
                tenant.id,
                created.id,
                name="wf",
                spec={"name": "wf", "nodes": [{"id": "n", "type": "llm"}]},
                spec_hash="h2",
                etag=created.etag,
                actor=ACTOR,
            )
            assert updated.version == 2
            await sources.create(
                connection,
                tenant.id,
                keyring(),
                name="crm",
                type="http",
                config={"base_url": "https://crm.example"},
                secrets={"token": "s3cret"},
                actor=ACTOR,
            )
            execution = await executions.create(
                connection,
                tenant.id,
                spec_hash=updated.spec_hash,
                inputs={"subject": "hi"},
                actor=ACTOR,
                workflow_id=updated.id,
                workflow_version=updated.version,
            )
            now = datetime.now(UTC)
            await executions.append_events(
                connection,
                tenant.id,
                execution.id,
                [
                    ExecutionEvent(str(execution.id), 1, now, EventType.EXECUTION_STARTED),
                    ExecutionEvent(
                        str(execution.id), 2, now, EventType.NODE_TOKEN, "n", 1, {"text": "x"}
                    ),
                    ExecutionEvent(
                        str(execution.id),
                        3,
                        now,
                        EventType.EXECUTION_COMPLETED,
                        data={"outputs": {"answer": "x"}},
                    ),
                ],
            )
            failure = NewOccurrence(
                kind=ErrorKind.NODE_ATTEMPT,
                code="provider.rate_limited",
                message="HTTP 429: slow down",
                occurred_at=now,
                node_type="llm",
                execution_id=execution.id,
                workflow_id=updated.id,
                node_id="n",
                attempt=1,
            )
            await error_groups.record(connection, tenant.id, [failure])
            await webhooks.create_delivery(
                connection,
                tenant.id,
                execution_id=execution.id,
                source_id=uuid.uuid4(),
                event_type="execution.completed",
                payload={"type": "execution.completed"},
            )
        token = uuid.uuid4()
        async with database.system() as connection:
            (delivery,) = await webhooks.lease_due(
                connection, token=token, limit=1, lease_seconds=60
            )
        async with database.tenant(tenant.id) as connection:
            await webhooks.record_attempt(
                connection,
                delivery,
                token=token,
                started_at=now,
                duration_ms=1.0,
                status_code=200,
                error="",
                delivered=True,
                permanent=False,
                retry_delay=5,
                retry_window=60,
            )
    finally:
        await database.close()
    return tenant.id


async def row_counts(dsn: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        return {
            table: await connection.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES
        }
    finally:
        await connection.close()


async def our_objects(dsn: str) -> set[str]:
    """Which of AgentFlow's tables and functions exist in the database."""
    connection = await asyncpg.connect(dsn)
    try:
        found = await connection.fetch(
            """
            SELECT tablename AS name FROM pg_tables
            WHERE schemaname = 'public' AND tablename = ANY($1::text[])
            UNION ALL
            SELECT proname FROM pg_proc
            WHERE pronamespace = 'public'::regnamespace AND proname = ANY($2::text[])
            """,
            list(TABLES),
            list(FUNCTIONS),
        )
    finally:
        await connection.close()
    return {row["name"] for row in found}


async def connect_and_close(dsn: str) -> None:
    database = await Database.connect(dsn, min_size=1, max_size=1, acquire_timeout=10)
    await database.close()


async def assert_usable_and_empty(dsn: str) -> None:
    assert await row_counts(dsn) == dict.fromkeys(TABLES, 0)
    await connect_and_close(dsn)
    await fill(dsn, name="again")


# --- upgrade ---


async def test_upgrade_on_an_empty_database_reaches_head_and_again_is_a_no_op(
    postgres_dsn: str,
) -> None:
    dsn = await create_database(postgres_dsn)
    before = await migrations.status(dsn)
    assert before.current is None
    assert not before.up_to_date

    applied = await migrations.upgrade(dsn)
    assert applied.current == applied.head == migrations.head_revision() == REVISIONS[-1]
    assert applied.up_to_date
    assert await migrations.status(dsn) == applied
    assert await our_objects(dsn) == {*TABLES, *FUNCTIONS}

    tenant_id = await fill(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        oid_before = await connection.fetchval("SELECT 'tenants'::regclass::oid")
        again = await migrations.upgrade(dsn)
        assert again == applied
        assert await connection.fetchval("SELECT 'tenants'::regclass::oid") == oid_before
        assert await connection.fetchval("SELECT count(*) FROM alembic_version") == 1
        assert await connection.fetchval("SELECT id FROM tenants") == tenant_id
    finally:
        await connection.close()


# --- downgrade ---


async def test_downgrade_to_base_of_an_empty_database_removes_every_table_and_function(
    postgres_dsn: str,
) -> None:
    dsn = await create_database(postgres_dsn)
    await migrations.upgrade(dsn)

    gone = await migrations.downgrade(dsn, "base")

    assert gone.current is None
    assert await our_objects(dsn) == set()
    again = await migrations.upgrade(dsn)
    assert again.up_to_date
    assert await our_objects(dsn) == {*TABLES, *FUNCTIONS}
    await assert_usable_and_empty(dsn)


async def test_downgrade_to_base_of_a_filled_database_then_upgrade_gives_an_empty_schema(
    postgres_dsn: str,
) -> None:
    dsn = await create_database(postgres_dsn)
    await migrations.upgrade(dsn)
    await fill(dsn)
    counts = await row_counts(dsn)
    assert all(counts.values()), counts  # every table holds rows
    assert counts["workflow_versions"] == 2
    assert counts["execution_events"] == 3

    gone = await migrations.downgrade(dsn, "base")

    assert gone.current is None
    assert await our_objects(dsn) == set()
    assert (await migrations.upgrade(dsn)).up_to_date
    await assert_usable_and_empty(dsn)


async def test_downgrade_keeps_the_role_while_another_database_uses_it(
    postgres_dsn: str,
) -> None:
    kept, dropped = await create_database(postgres_dsn), await create_database(postgres_dsn)
    await migrations.upgrade(kept)
    await migrations.upgrade(dropped)

    await migrations.downgrade(dropped, "base")

    server = await asyncpg.connect(postgres_dsn)
    try:
        assert await server.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", APP_ROLE)
    finally:
        await server.close()
    await fill(kept)  # the other database still works as the role
    assert (await migrations.upgrade(dropped)).up_to_date
    await assert_usable_and_empty(dropped)


@pytest.mark.parametrize("revision", REVISIONS)
async def test_each_revision_goes_up_down_and_up_again_on_a_filled_database(
    postgres_dsn: str, revision: str
) -> None:
    """Filled at head through the repositories, brought down to just below `revision`; then
    `revision` is applied, reverted and applied again, and head must still work."""
    below = down_revision_of(revision)
    dsn = await create_database(postgres_dsn)
    await migrations.upgrade(dsn)
    tenant_id = await fill(dsn)
    assert (await migrations.downgrade(dsn, below)).current == (None if below == "base" else below)

    assert (await migrations.upgrade(dsn, revision)).current == revision
    assert (await migrations.downgrade(dsn, below)).current == (None if below == "base" else below)
    assert (await migrations.upgrade(dsn, revision)).current == revision

    assert (await migrations.upgrade(dsn)).up_to_date
    if below == "base":
        await assert_usable_and_empty(dsn)
        return
    # A revision's round trip keeps what the revisions below it hold.
    connection = await asyncpg.connect(dsn)
    try:
        assert await connection.fetchval("SELECT id FROM tenants WHERE name = 'filled'") == (
            tenant_id
        )
    finally:
        await connection.close()
    await fill(dsn, name="again")


def test_the_revision_chain_is_linear_and_numbered() -> None:
    script = ScriptDirectory.from_config(migrations.alembic_config())
    assert script.get_heads() == [REVISIONS[-1]]
    assert [f"{number:04d}" for number in range(1, len(REVISIONS) + 1)] == REVISIONS


# --- concurrency: the advisory lock ---


async def test_concurrent_upgrades_of_a_fresh_database_apply_the_schema_once(
    postgres_dsn: str,
) -> None:
    dsn = await create_database(postgres_dsn)

    results = await asyncio.gather(*(migrations.upgrade(dsn) for _ in range(4)))

    assert all(result.up_to_date for result in results), results
    assert await migrations.status(dsn) == results[0]
    connection = await asyncpg.connect(dsn)
    try:
        assert await connection.fetchval("SELECT count(*) FROM alembic_version") == 1
    finally:
        await connection.close()
    await assert_usable_and_empty(dsn)


async def test_an_upgrade_waits_for_the_advisory_lock(postgres_dsn: str) -> None:
    """Deterministic form of the race: while another session holds the lock, nothing applies."""
    dsn = await create_database(postgres_dsn)
    holder, observer = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1)", migrations._LOCK_KEY)
        upgrade = asyncio.create_task(migrations.upgrade(dsn))
        # (pg_stat_activity is read on its own connection: a transaction sees a frozen copy.)
        deadline = asyncio.get_running_loop().time() + 10
        while not await observer.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))",
            holder.get_server_pid(),
        ):
            assert asyncio.get_running_loop().time() < deadline, "the upgrade never waited"
            await asyncio.sleep(0.01)
        assert not upgrade.done()
        assert await our_objects(dsn) == set()
        await transaction.rollback()
        assert (await asyncio.wait_for(upgrade, 30)).up_to_date
    finally:
        await holder.close()
        await observer.close()


# --- what the runtime connects as ---


@pytest.mark.parametrize("state", ["never-migrated", "downgraded-to-base"])
async def test_connecting_to_a_database_without_the_schema_says_to_run_migrate(
    postgres_dsn: str, migrated_dsn: str, state: str
) -> None:
    # `migrated_dsn` makes sure the cluster-wide role exists, as it will on any shared server:
    # connecting as the role succeeds, so the check must look at the schema itself.
    dsn = await create_database(postgres_dsn)
    if state == "downgraded-to-base":
        await migrations.upgrade(dsn)
        await migrations.downgrade(dsn, "base")

    with pytest.raises(ConfigurationError, match="agentflow migrate"):
        await connect_and_close(dsn)


async def test_runtime_connections_run_as_the_app_role_without_rls_bypass(
    migrated_dsn: str,
) -> None:
    database = await Database.connect(migrated_dsn, min_size=2, max_size=2, acquire_timeout=10)
    try:
        for _ in range(3):
            async with database.connection() as connection:
                row = await connection.fetchrow(
                    """
                    SELECT current_user, r.rolsuper, r.rolbypassrls
                    FROM pg_roles r WHERE r.rolname = current_user
                    """
                )
                assert row["current_user"] == APP_ROLE
                assert row["rolsuper"] is False
                assert row["rolbypassrls"] is False
            async with database.system() as connection:
                assert await connection.fetchval("SELECT current_user") == APP_ROLE
    finally:
        await database.close()


async def test_migrate_to_goes_whichever_way_reaches_the_target(postgres_dsn: str) -> None:
    dsn = await create_database(postgres_dsn)
    revisions = [
        rev.revision
        for rev in reversed(
            list(ScriptDirectory.from_config(migrations.alembic_config()).walk_revisions())
        )
    ]
    assert (await migrations.migrate_to(dsn, "head")).current == revisions[-1]
    assert (await migrations.migrate_to(dsn, revisions[0])).current == revisions[0]  # down
    assert (await migrations.migrate_to(dsn, revisions[-1])).current == revisions[-1]  # up
    assert (await migrations.migrate_to(dsn, "-1")).current == revisions[-2]
    assert (await migrations.migrate_to(dsn, "+1")).current == revisions[-1]
    assert (await migrations.migrate_to(dsn, "base")).current is None
    with pytest.raises(ConfigurationError, match="9999"):
        await migrations.migrate_to(dsn, "9999")

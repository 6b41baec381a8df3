"""The audit log in the real PostgreSQL: hash chains per tenant (and the system's), where each row
came from, append-only for the app role (grants) and for everyone (the trigger), row-level
security on the system's chain, and the filtered, paged list.

Rows are written through `storage.audit.record` on the runtime's pool (role agentflow_app);
they are read back in system scope, and `owner` (a superuser connection) plays the attacker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from support.storage import ACTOR, new_tenant

from agentflow_grpc.model.audit_origin import AuditOrigin, current_origin, set_origin
from agentflow_grpc.model.errors import InvalidArgumentError
from agentflow_grpc.model.records import AuditEntry, Tenant
from agentflow_grpc.storage import audit
from agentflow_grpc.storage.database import APP_ROLE, Database

WRITERS = 60


@pytest.fixture
async def wide_database(migrated_dsn: str, owner: asyncpg.Connection) -> AsyncIterator[Database]:
    """A pool wide enough for many writers to be waiting on one chain at once."""
    database = await Database.connect(migrated_dsn, min_size=1, max_size=20, acquire_timeout=60)
    try:
        yield database
    finally:
        await database.close()


async def write(
    database: Database, tenant_id: uuid.UUID | None, action: str = "thing.change", **fields: Any
) -> AuditEntry:
    """One row in a transaction of its own (system scope for the system's chain)."""
    scope = database.system() if tenant_id is None else database.tenant(tenant_id)
    async with scope as connection:
        return await audit.record(
            connection,
            tenant_id,
            actor=fields.pop("actor", ACTOR),
            action=action,
            resource_type=fields.pop("resource_type", "thing"),
            resource_id=fields.pop("resource_id", "t-1"),
            before=fields.pop("before", None),
            after=fields.pop("after", {"state": action}),
            **fields,
        )


async def stored_chain(database: Database, tenant_id: uuid.UUID | None) -> list[AuditEntry]:
    """A chain as stored, read in system scope (JSON decoded as the runtime decodes it)."""
    async with database.system() as connection:
        rows = await connection.fetch(
            "SELECT * FROM audit_log WHERE tenant_id IS NOT DISTINCT FROM $1 ORDER BY chain_seq",
            tenant_id,
        )
    return [audit.entry_of(row) for row in rows]


async def stored_row(database: Database, row_id: int) -> asyncpg.Record:
    async with database.system() as connection:
        return await connection.fetchrow("SELECT * FROM audit_log WHERE id = $1", row_id)


def assert_intact(chain: list[AuditEntry]) -> None:
    """Numbered 1..n, each linked to the row before, each hash recomputed from its fields."""
    assert [entry.chain_seq for entry in chain] == list(range(1, len(chain) + 1))
    previous: str | None = None
    for entry in chain:
        assert entry.prev_hash == previous, entry
        assert audit.hash_document(audit.document_of(entry)) == entry.row_hash, entry
        previous = entry.row_hash


# --- the chain ---


async def test_each_tenant_has_its_own_chain_linked_by_hashes(
    database: Database, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    written = [await write(database, tenant_a.id, f"thing.step{index}") for index in range(3)]
    await write(database, tenant_b.id)

    chain_a = await stored_chain(database, tenant_a.id)
    assert [entry.action for entry in chain_a] == [
        "tenant.create",  # written by create_tenant, the chain's first row
        "thing.step0",
        "thing.step1",
        "thing.step2",
    ]
    assert chain_a[1:] == written  # what record() returned is exactly what was stored
    assert_intact(chain_a)
    chain_b = await stored_chain(database, tenant_b.id)
    assert [entry.chain_seq for entry in chain_b] == [1, 2]
    assert_intact(chain_b)
    assert chain_b[0].prev_hash is None
    assert written[0].prev_hash == chain_a[0].row_hash


async def test_concurrent_writers_in_one_tenant_leave_a_chain_without_gaps(
    wide_database: Database,
) -> None:
    tenant = await new_tenant(wide_database, "busy")
    other = await new_tenant(wide_database, "neighbour")

    await asyncio.gather(
        *(write(wide_database, tenant.id, f"thing.w{index}") for index in range(WRITERS)),
        *(write(wide_database, other.id) for _ in range(10)),
        *(write(wide_database, None, "auth.refused") for _ in range(10)),
    )

    chain = await stored_chain(wide_database, tenant.id)
    assert len(chain) == WRITERS + 1
    assert {entry.action for entry in chain[1:]} == {f"thing.w{index}" for index in range(WRITERS)}
    assert_intact(chain)
    # Under the chain's lock, ids and times follow the chain's order.
    assert [entry.id for entry in chain] == sorted(entry.id for entry in chain)
    assert [entry.occurred_at for entry in chain] == sorted(entry.occurred_at for entry in chain)
    assert_intact(await stored_chain(wide_database, other.id))
    system = await stored_chain(wide_database, None)
    assert len(system) == 10
    assert_intact(system)


async def test_a_second_row_at_a_chain_position_is_refused(
    database: Database, owner: asyncpg.Connection, tenant_a: Tenant
) -> None:
    head = await write(database, tenant_a.id)
    with pytest.raises(asyncpg.UniqueViolationError, match="audit_log_chain"):
        await owner.execute(
            """
            INSERT INTO audit_log (tenant_id, actor, action, resource_type, resource_id,
                                   chain_seq, prev_hash, row_hash)
            VALUES ($1, 'forger', 'thing.forge', 'thing', 't', $2, $3, $4)
            """,
            tenant_a.id,
            head.chain_seq,
            head.prev_hash,
            "0" * 64,
        )


async def test_rows_must_carry_a_well_formed_chain(database: Database, tenant_a: Tenant) -> None:
    async with database.tenant(tenant_a.id) as connection:
        with pytest.raises(asyncpg.CheckViolationError, match="audit_log_row_hash_check"):
            await connection.execute(
                """
                INSERT INTO audit_log (tenant_id, actor, action, resource_type, resource_id,
                                       chain_seq, row_hash)
                VALUES ($1, 'x', 'x', 'x', 'x', 1, 'not a hash')
                """,
                tenant_a.id,
            )


# --- what each row holds ---


async def test_a_row_records_the_origin_and_outcome_of_the_call(
    database: Database, tenant_a: Tenant
) -> None:
    origin = AuditOrigin("req-7f3a", "4bf92f3577b34da6a3ce929d0e0e4736", "ipv4:10.1.2.3:51234")
    set_origin(origin)
    try:
        written = await write(database, tenant_a.id, outcome="permission_denied")
    finally:
        set_origin(None)
    assert current_origin() == AuditOrigin()

    row = await stored_row(database, written.id)
    assert row["request_id"] == "req-7f3a"
    assert row["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert row["source_address"] == "ipv4:10.1.2.3:51234"
    assert row["outcome"] == "permission_denied"
    assert audit.entry_of(row) == written
    # Outside a call there is no origin; the outcome defaults to ok.
    plain = await write(database, tenant_a.id)
    assert (plain.request_id, plain.trace_id, plain.source_address) == (None, None, None)
    assert plain.outcome == "ok"


async def test_the_hash_covers_exactly_what_is_stored(database: Database, tenant_a: Tenant) -> None:
    """Times in UTC to the microsecond, and details as jsonb gives them back (1e20 comes back
    as an integer, keys reordered): the hash is computed over the stored form."""
    details = {"z": 1e20, "a": [0.1, "ünïcode ✓", None, True], "nested": {"b": 2, "a": 1}}
    written = await write(database, tenant_a.id, details=details)

    row = await stored_row(database, written.id)
    stored = audit.entry_of(row)
    assert stored.occurred_at == written.occurred_at
    assert stored.occurred_at.utcoffset() == timedelta(0)
    assert stored.details == written.details == {**details, "z": 10**20}
    assert audit.hash_document(audit.document_of(stored)) == stored.row_hash == written.row_hash
    document = audit.document_of(stored)
    assert document["occurred_at"].endswith("+00:00")
    assert len(document["occurred_at"]) == len("2026-12-01T09:30:00.123456+00:00")
    assert set(document) | {"row_hash"} == set(row.keys())  # every column


# --- append-only ---


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET details = '{\"forged\": true}'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
async def test_the_app_role_cannot_change_or_remove_rows(
    database: Database, owner: asyncpg.Connection, tenant_a: Tenant, statement: str
) -> None:
    await write(database, tenant_a.id)
    before = await owner.fetch("SELECT * FROM audit_log ORDER BY id")
    for scope in (database.tenant(tenant_a.id), database.system()):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            async with scope as connection:
                await connection.execute(statement)
    assert await owner.fetch("SELECT * FROM audit_log ORDER BY id") == before


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"]
)
async def test_the_trigger_refuses_changes_even_to_the_owner(
    database: Database, owner: asyncpg.Connection, tenant_a: Tenant, statement: str
) -> None:
    await write(database, tenant_a.id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="never changed or removed"):
        await owner.execute(statement)


async def test_the_app_role_holds_select_and_insert_only(
    database: Database, owner: asyncpg.Connection
) -> None:
    privileges = await owner.fetch(
        """
        SELECT privilege FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                           'REFERENCES', 'TRIGGER']) AS privilege
        WHERE has_table_privilege($1, 'audit_log', privilege)
        """,
        APP_ROLE,
    )
    assert {row["privilege"] for row in privileges} == {"SELECT", "INSERT"}
    assert not await owner.fetchval(
        "SELECT bool_or(has_column_privilege($1, 'audit_log', attname, 'UPDATE'))"
        " FROM pg_attribute WHERE attrelid = 'audit_log'::regclass AND attnum > 0",
        APP_ROLE,
    )
    async with database.system() as connection:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
            await connection.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")


# --- the system's chain and row-level security ---


async def test_the_system_chain_is_seen_in_system_scope_only(
    database: Database, owner: asyncpg.Connection, tenant_a: Tenant
) -> None:
    refused = await write(database, None, "auth.refused", outcome="unauthenticated")
    assert refused.tenant_id is None
    assert refused.chain_seq == 1

    async with database.tenant(tenant_a.id) as connection:
        assert (
            await connection.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id IS NULL") == 0
        )
        assert {
            row["action"] for row in await connection.fetch("SELECT action FROM audit_log")
        } == {"tenant.create"}
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await audit.record(
                connection,
                None,
                actor="anonymous",
                action="auth.refused",
                resource_type="credential",
                resource_id="none",
                before=None,
                after=None,
            )
    async with database.connection() as connection:  # no scope at all: nothing
        assert await connection.fetchval("SELECT count(*) FROM audit_log") == 0
    async with database.system() as connection:
        ids = [
            row["id"]
            for row in await connection.fetch("SELECT id FROM audit_log WHERE tenant_id IS NULL")
        ]
    assert ids == [refused.id]
    assert await owner.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id IS NULL") == 1


# --- the list ---


@pytest.fixture
async def logged(database: Database, tenant_a: Tenant, tenant_b: Tenant) -> list[AuditEntry]:
    """Seven rows of tenant A (besides its tenant.create) and one of B, oldest first."""
    rows = []
    for index, (actor, action, resource_id) in enumerate(
        [
            ("api_key:1", "workflow.create", "w1"),
            ("api_key:2", "workflow.update", "w1"),
            ("api_key:1", "source.create", "s1"),
            ("api_key:1", "workflow.update", "w2"),
            ("oidc:x#ann", "workflow.delete", "w1"),
            ("api_key:2", "source.create", "s2"),
            ("api_key:1", "workflow.update", "w1"),
        ]
    ):
        resource_type = "workflow" if resource_id.startswith("w") else "source"
        rows.append(
            await write(
                database,
                tenant_a.id,
                action,
                actor=actor,
                resource_type=resource_type,
                resource_id=resource_id,
                details={"index": index},
            )
        )
    await write(database, tenant_b.id, "workflow.update", actor="api_key:1", resource_id="w1")
    return rows


async def list_all(
    database: Database, tenant_id: uuid.UUID, *, size: int, **filters: Any
) -> list[list[AuditEntry]]:
    """Every page of a list, following its tokens."""
    pages: list[list[AuditEntry]] = []
    token = ""
    async with database.tenant(tenant_id) as connection:
        while True:
            page = await audit.list_events(connection, tenant_id, size=size, token=token, **filters)
            pages.append(page.items)
            token = page.next_page_token
            if not token:
                return pages


async def test_the_list_is_newest_first_in_pages_that_cover_every_row_once(
    database: Database, tenant_a: Tenant, logged: list[AuditEntry]
) -> None:
    pages = await list_all(database, tenant_a.id, size=3)

    assert [len(page) for page in pages] == [3, 3, 2]
    listed = [entry for page in pages for entry in page]
    assert listed[:-1] == list(reversed(logged))
    assert listed[-1].action == "tenant.create"


@pytest.mark.parametrize(
    ("filters", "indexes"),
    [
        ({"actor": "api_key:1"}, [6, 3, 2, 0]),
        ({"action": "workflow.update"}, [6, 3, 1]),
        ({"resource_type": "source"}, [5, 2]),
        ({"resource_type": "workflow", "resource_id": "w1"}, [6, 4, 1, 0]),
        ({"actor": "api_key:1", "action": "workflow.update", "resource_id": "w1"}, [6]),
        ({"actor": "nobody"}, []),
    ],
)
async def test_the_list_filters_by_actor_action_and_resource(
    database: Database,
    tenant_a: Tenant,
    logged: list[AuditEntry],
    filters: dict[str, str],
    indexes: list[int],
) -> None:
    pages = await list_all(database, tenant_a.id, size=2, **filters)
    assert [entry.details["index"] for page in pages for entry in page] == indexes


async def test_the_list_filters_by_a_time_range(
    database: Database, tenant_a: Tenant, logged: list[AuditEntry]
) -> None:
    since, until = logged[2].occurred_at, logged[5].occurred_at
    pages = await list_all(database, tenant_a.id, size=10, since=since, until=until)
    assert [entry.details["index"] for entry in pages[0]] == [4, 3, 2]  # since in, until out
    later = await list_all(database, tenant_a.id, size=10, since=datetime.now(UTC))
    assert later == [[]]


async def test_a_page_token_is_bound_to_its_filters(
    database: Database, tenant_a: Tenant, logged: list[AuditEntry]
) -> None:
    async with database.tenant(tenant_a.id) as connection:
        first = await audit.list_events(connection, tenant_a.id, size=2, actor="api_key:1")
        with pytest.raises(InvalidArgumentError, match="other filters") as refused:
            await audit.list_events(
                connection, tenant_a.id, size=2, actor="api_key:2", token=first.next_page_token
            )
    assert refused.value.field == "page_token"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"size": -1}, "page_size"),
        ({"token": "not-a-token"}, "page_token"),
        ({"actor": "x" * 201}, "actor"),
        ({"action": "tab\there"}, "action"),
        ({"resource_type": "\x00"}, "resource_type"),
        ({"resource_id": "y" * 500}, "resource_id"),
        (
            {"since": datetime(2026, 1, 2, tzinfo=UTC), "until": datetime(2026, 1, 1, tzinfo=UTC)},
            "occur_time_before",
        ),
    ],
)
async def test_bad_list_arguments_name_their_field(
    database: Database, tenant_a: Tenant, arguments: dict[str, Any], field: str
) -> None:
    async with database.tenant(tenant_a.id) as connection:
        with pytest.raises(InvalidArgumentError) as refused:
            await audit.list_events(connection, tenant_a.id, **arguments)
    assert refused.value.field == field


async def test_page_sizes_default_and_are_capped(
    database: Database, tenant_a: Tenant, logged: list[AuditEntry]
) -> None:
    async with database.tenant(tenant_a.id) as connection:
        default = await audit.list_events(connection, tenant_a.id, size=0)
        capped = await audit.list_events(connection, tenant_a.id, size=10**6)
    assert len(default.items) == len(capped.items) == len(logged) + 1
    assert default.next_page_token == capped.next_page_token == ""


async def test_a_tenant_lists_none_of_another_tenants_rows(
    database: Database, tenant_b: Tenant, logged: list[AuditEntry]
) -> None:
    pages = await list_all(database, tenant_b.id, size=50)
    assert [entry.action for entry in pages[0]] == ["workflow.update", "tenant.create"]
    assert {entry.tenant_id for entry in pages[0]} == {tenant_b.id}

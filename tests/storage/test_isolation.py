"""Tenant isolation, twice over: every repository call is scoped to a tenant, and PostgreSQL's
row-level security hides other tenants' rows even from a query that forgets to ask.

Tenant A owns one of everything; tenant B tries to read, list, update and delete it by exact id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import pytest
from support.storage import ACTOR

from agentflow_grpc.model.errors import NotFoundError
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.records import Role, Tenant
from agentflow_grpc.storage import audit, executions, sources, tenants, workflows
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database

TABLES = (
    "tenants",
    "api_keys",
    "workflows",
    "workflow_versions",
    "sources",
    "executions",
    "execution_events",
    "audit_log",
)


@dataclass(frozen=True)
class Owned:
    workflow_id: uuid.UUID
    source_id: uuid.UUID
    execution_id: uuid.UUID
    api_key_id: uuid.UUID
    api_key: str


@pytest.fixture
async def owned(database: Database, tenant_a: Tenant, keyring: Keyring) -> Owned:
    async with database.tenant(tenant_a.id) as connection:
        workflow = await workflows.create(
            connection, tenant_a.id, name="wf", spec={"name": "wf"}, spec_hash="h1", actor=ACTOR
        )
        source = await sources.create(
            connection,
            tenant_a.id,
            keyring,
            name="openai-main",
            type="openai",
            config={"model": "m"},
            secrets={"api_key": "sk-a"},
            actor=ACTOR,
        )
        execution = await executions.create(
            connection,
            tenant_a.id,
            spec_hash="h1",
            inputs={"q": 1},
            actor=ACTOR,
            workflow_id=workflow.id,
            workflow_version=1,
        )
        started = ExecutionEvent(
            str(execution.id), 1, datetime.now(UTC), EventType.EXECUTION_STARTED, data={}
        )
        await executions.append_events(connection, tenant_a.id, execution.id, [started])
        key, text = await tenants.create_api_key(
            connection, tenant_a.id, role=Role.ADMIN, actor=ACTOR
        )
    return Owned(workflow.id, source.id, execution.id, key.id, text)


async def test_tenant_b_cannot_read_tenant_a_by_exact_id(
    database: Database, tenant_b: Tenant, owned: Owned
) -> None:
    async with database.tenant(tenant_b.id) as connection:
        with pytest.raises(NotFoundError):
            await workflows.get(connection, tenant_b.id, owned.workflow_id, include_deleted=True)
        with pytest.raises(NotFoundError):
            await workflows.get_version(connection, tenant_b.id, owned.workflow_id, 1)
        with pytest.raises(NotFoundError):
            await workflows.list_versions(connection, tenant_b.id, owned.workflow_id)
        with pytest.raises(NotFoundError):
            await sources.get(connection, tenant_b.id, owned.source_id)
        with pytest.raises(NotFoundError):
            await sources.find(connection, tenant_b.id, "openai-main")
        with pytest.raises(NotFoundError):
            await executions.get(connection, tenant_b.id, owned.execution_id)
        with pytest.raises(NotFoundError):
            await executions.list_events(connection, tenant_b.id, owned.execution_id)


async def test_tenant_b_lists_nothing_of_tenant_a(
    database: Database, tenant_b: Tenant, keyring: Keyring, owned: Owned
) -> None:
    async with database.tenant(tenant_b.id) as connection:
        listed = await workflows.list_workflows(connection, tenant_b.id, show_deleted=True)
        assert listed.items == []
        assert (await sources.list_sources(connection, tenant_b.id)).items == []
        assert (await executions.list_executions(connection, tenant_b.id)).items == []
        assert await sources.definitions(connection, tenant_b.id, keyring) == []
        assert await sources.types_by_name(connection, tenant_b.id) == {}
        assert await tenants.list_api_keys(connection, tenant_b.id) == []
        entries = await audit.list_entries(connection, tenant_b.id)
        assert {entry.action for entry in entries} == {"tenant.create"}  # its own, only


async def test_tenant_b_cannot_change_or_delete_tenant_a(
    database: Database, tenant_a: Tenant, tenant_b: Tenant, keyring: Keyring, owned: Owned
) -> None:
    async with database.tenant(tenant_b.id) as connection:
        with pytest.raises(NotFoundError):
            await workflows.update(
                connection,
                tenant_b.id,
                owned.workflow_id,
                name="wf",
                spec={"name": "stolen"},
                spec_hash="h2",
                etag=None,
                actor=ACTOR,
            )
        with pytest.raises(NotFoundError):
            await workflows.delete(
                connection, tenant_b.id, owned.workflow_id, etag=None, actor=ACTOR
            )
        with pytest.raises(NotFoundError):
            await sources.update(
                connection,
                tenant_b.id,
                owned.source_id,
                keyring,
                etag=None,
                actor=ACTOR,
                secrets={"api_key": "sk-b"},
            )
        with pytest.raises(NotFoundError):
            await sources.delete(connection, tenant_b.id, owned.source_id, etag=None, actor=ACTOR)
        with pytest.raises(NotFoundError):
            await tenants.revoke_api_key(connection, tenant_b.id, owned.api_key_id, actor=ACTOR)
        late = ExecutionEvent(
            str(owned.execution_id), 2, datetime.now(UTC), EventType.NODE_STARTED, "n", 1, {}
        )
        with pytest.raises(NotFoundError):
            await executions.append_events(connection, tenant_b.id, owned.execution_id, [late])
    # Tenant A's things are as they were.
    async with database.tenant(tenant_a.id) as connection:
        workflow = await workflows.get(connection, tenant_a.id, owned.workflow_id)
        assert (workflow.version, workflow.spec, workflow.deleted_at) == (1, {"name": "wf"}, None)
        definitions = await sources.definitions(connection, tenant_a.id, keyring)
        assert definitions[0].secrets["api_key"].get_secret_value() == "sk-a"
        execution = await executions.get(connection, tenant_a.id, owned.execution_id)
        assert execution.last_sequence == 1
        (key,) = await tenants.list_api_keys(connection, tenant_a.id)
        assert key.revoked_at is None


async def test_row_level_security_hides_rows_a_query_forgot_to_scope(
    database: Database, tenant_a: Tenant, tenant_b: Tenant, owned: Owned
) -> None:
    """A repository bug passing tenant A's id inside tenant B's transaction still finds nothing,
    and unscoped SQL sees only the transaction's own tenant."""
    async with database.tenant(tenant_b.id) as connection:
        with pytest.raises(NotFoundError):
            await workflows.get(connection, tenant_a.id, owned.workflow_id)
        with pytest.raises(NotFoundError):
            await executions.get(connection, tenant_a.id, owned.execution_id)
        for table in TABLES:
            rows = await connection.fetch(f"SELECT * FROM {table}")  # no WHERE at all
            own = "id" if table == "tenants" else "tenant_id"
            assert {row[own] for row in rows} <= {tenant_b.id}, table


async def test_row_level_security_refuses_writing_into_another_tenant(
    database: Database, tenant_a: Tenant, tenant_b: Tenant, owned: Owned
) -> None:
    async with database.tenant(tenant_b.id) as connection:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await connection.execute(
                "INSERT INTO workflows (tenant_id, name, current_version, created_by, updated_by)"
                " VALUES ($1, 'x', 1, 'a', 'a')",
                tenant_a.id,
            )
    async with database.tenant(tenant_b.id) as connection:
        changed = await connection.execute(
            "UPDATE workflows SET name = 'stolen' WHERE id = $1", owned.workflow_id
        )
        assert changed == "UPDATE 0"


async def test_a_transaction_without_a_tenant_sees_nothing(
    database: Database, owned: Owned
) -> None:
    async with database.connection() as connection:
        for table in TABLES:
            assert await connection.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_system_scope_authenticates_keys_across_tenants(
    database: Database, tenant_a: Tenant, owned: Owned
) -> None:
    async with database.system() as connection:
        record = await tenants.find_api_key(connection, owned.api_key)
    assert record is not None
    principal = tenants.principal_of(record)
    assert (principal.tenant_id, principal.role, principal.api_key_id) == (
        tenant_a.id,
        Role.ADMIN,
        owned.api_key_id,
    )
    # A tenant-scoped transaction cannot look keys up by hash (the lookup is the system's).
    async with database.tenant(uuid.uuid4()) as connection:
        assert await tenants.find_api_key(connection, owned.api_key) is None


async def test_the_runtime_role_cannot_delete_rows(database: Database, tenant_a: Tenant) -> None:
    for table in TABLES:
        async with database.tenant(tenant_a.id) as connection:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(f"DELETE FROM {table}")

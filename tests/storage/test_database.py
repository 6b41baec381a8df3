"""The pool's guards: the schema revision it needs, and lost connections as UnavailableError."""

from __future__ import annotations

import asyncpg
import pytest

from agentflow_grpc.model.errors import ConfigurationError, UnavailableError
from agentflow_grpc.model.records import Tenant
from agentflow_grpc.storage import migrations
from agentflow_grpc.storage.database import Database


async def test_the_pool_refuses_a_schema_at_another_revision(migrated_dsn: str) -> None:
    with pytest.raises(
        ConfigurationError,
        match=f"is at revision {migrations.head_revision()}, and this AgentFlow needs 9999",
    ):
        await Database.connect(migrated_dsn, schema_revision="9999")
    database = await Database.connect(migrated_dsn, schema_revision=migrations.head_revision())
    await database.close()


async def test_a_connection_killed_mid_transaction_is_unavailable(
    database: Database, tenant_a: Tenant, owner: asyncpg.Connection
) -> None:
    async def killed_mid_transaction() -> None:
        async with database.tenant(tenant_a.id) as connection:
            await owner.execute("SELECT pg_terminate_backend($1)", connection.get_server_pid())
            await connection.fetchval("SELECT 1")

    with pytest.raises(UnavailableError, match="connection was lost"):
        await killed_mid_transaction()
    async with database.tenant(tenant_a.id) as connection:  # the pool replaced it
        assert await connection.fetchval("SELECT 1") == 1

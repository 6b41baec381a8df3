"""Fixtures for tests of storage and services: a migrated database in the session's PostgreSQL.

A pytest plugin, loaded by tests/conftest.py.

`migrated_dsn` is one database per session, upgraded to the newest revision; each test gets a
`database` (the runtime's pool, as `agentflow_app`) and finds every table empty: the tables are
truncated after each test, through an owner connection (`owner`), which also lets tests look at
rows the way an operator would.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import asyncpg
import pytest

from agentflow_grpc.model.records import Tenant
from agentflow_grpc.storage import migrations
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database
from support.storage import TABLES, create_database, new_tenant


@pytest.fixture(scope="session")
def migrated_dsn(postgres_dsn: str) -> str:
    async def prepare() -> str:
        dsn = await create_database(postgres_dsn)
        await migrations.upgrade(dsn)
        return dsn

    return asyncio.run(prepare())


@pytest.fixture
async def owner(migrated_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the database's owner (a superuser here): sees everything, bypasses RLS."""
    connection = await asyncpg.connect(migrated_dsn)
    try:
        yield connection
    finally:
        await connection.execute(f"TRUNCATE {', '.join(TABLES)}")
        await connection.close()


@pytest.fixture
async def database(migrated_dsn: str, owner: asyncpg.Connection) -> AsyncIterator[Database]:
    database = await Database.connect(migrated_dsn, min_size=1, max_size=10, acquire_timeout=10)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring([("k1", base64.b64decode(Keyring.generate_key()))])


@pytest.fixture
async def tenant_a(database: Database) -> Tenant:
    return await new_tenant(database, "tenant-a")


@pytest.fixture
async def tenant_b(database: Database) -> Tenant:
    return await new_tenant(database, "tenant-b")

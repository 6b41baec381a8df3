"""Helpers for storage tests (the fixtures are in tests/integration/storage/conftest.py)."""

from __future__ import annotations

import uuid

import asyncpg

from agentflow_grpc.storage import tenants
from agentflow_grpc.storage.database import Database
from agentflow_grpc.storage.records import Tenant

ACTOR = "operator:test"

# Every AgentFlow table, children before parents (the order TRUNCATE lists them in).
TABLES = (
    "audit_log",
    "execution_events",
    "executions",
    "sources",
    "workflow_versions",
    "workflows",
    "api_keys",
    "tenants",
)


def database_dsn(server_dsn: str, name: str) -> str:
    return server_dsn.replace("/postgres?", f"/{name}?")


async def create_database(server_dsn: str, prefix: str = "agentflow") -> str:
    """A new, empty database on the server; its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(server_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return database_dsn(server_dsn, name)


async def new_tenant(database: Database, name: str) -> Tenant:
    async with database.system() as connection:
        return await tenants.create_tenant(connection, name, actor=ACTOR)

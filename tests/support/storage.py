"""Helpers for storage tests (the fixtures are in tests/support/storage_fixtures.py)."""

from __future__ import annotations

from agentflow_grpc.devstack.postgres import create_database
from agentflow_grpc.model.records import Tenant
from agentflow_grpc.storage import tenants
from agentflow_grpc.storage.database import Database

ACTOR = "operator:test"

__all__ = ["ACTOR", "TABLES", "create_database", "new_tenant"]

# Every AgentFlow table, children before parents (the order TRUNCATE lists them in).
TABLES = (
    "webhook_delivery_attempts",
    "webhook_deliveries",
    "error_occurrences",
    "error_groups",
    "audit_log",
    "execution_events",
    "executions",
    "sources",
    "workflow_versions",
    "workflows",
    "api_keys",
    "tenants",
)


async def new_tenant(database: Database, name: str) -> Tenant:
    async with database.system() as connection:
        return await tenants.create_tenant(connection, name, actor=ACTOR)

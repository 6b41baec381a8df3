"""Tenants and API keys: created by operators (the CLI), used by every request to authenticate."""

from __future__ import annotations

from agentflow_grpc.model.errors import UnauthenticatedError
from agentflow_grpc.model.records import ApiKey, Principal, Role, Tenant
from agentflow_grpc.storage import tenants as store
from agentflow_grpc.storage.database import Database


class TenantService:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def create_tenant(self, name: str, *, actor: str) -> Tenant:
        async with self._database.system() as connection:
            return await store.create_tenant(connection, name, actor=actor)

    async def find_tenant(self, name: str) -> Tenant:
        async with self._database.system() as connection:
            return await store.find_tenant(connection, name)

    async def create_api_key(
        self, tenant_name: str, *, role: Role, description: str = "", actor: str
    ) -> tuple[ApiKey, str]:
        """A new key for the tenant named `tenant_name`: its record, and the key, shown once."""
        async with self._database.system() as connection:
            tenant = await store.find_tenant(connection, tenant_name)
            return await store.create_api_key(
                connection, tenant.id, role=role, description=description, actor=actor
            )

    async def authenticate(self, key: str) -> Principal:
        """The principal of a live key; UnauthenticatedError for anything else."""
        async with self._database.system() as connection:
            principal = await store.authenticate(connection, key)
        if principal is None:
            raise UnauthenticatedError("the API key is not valid, or has been revoked")
        return principal

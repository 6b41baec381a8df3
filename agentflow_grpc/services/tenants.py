"""Tenants, their limits and their API keys: created by operators (the CLI) and by a tenant's
admins (AdminService), each change in one transaction with its audit row.

Revoking or rotating a key, and changing a tenant's limits, is announced to every server once
committed (`Invalidations.publish`), so none goes on using what it cached of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

from agentflow_grpc.limits.invalidations import Invalidation, Invalidations
from agentflow_grpc.model.records import ApiKey, Principal, Role, Tenant, TenantLimits
from agentflow_grpc.services.authentication import principal_of_key
from agentflow_grpc.storage import tenants as store
from agentflow_grpc.storage.database import Database


class TenantService:
    def __init__(self, database: Database, *, invalidations: Invalidations | None = None) -> None:
        """`invalidations`: where changes to keys and limits are announced to every server
        (None: nowhere, for a process that caches none, such as a CLI command)."""
        self._database = database
        self._invalidations = invalidations

    async def create_tenant(self, name: str, *, actor: str) -> Tenant:
        async with self._database.system() as connection:
            return await store.create_tenant(connection, name, actor=actor)

    async def find_tenant(self, name: str) -> Tenant:
        async with self._database.system() as connection:
            return await store.find_tenant(connection, name)

    async def get_tenant(self, tenant_id: uuid.UUID) -> Tenant:
        """The tenant with its own limits; NotFoundError if there is none."""
        async with self._database.tenant(tenant_id) as connection:
            return await store.get_tenant(connection, tenant_id)

    async def tenant_limits(self, tenant_id: uuid.UUID) -> TenantLimits:
        """The tenant's own limits (the limiter's lookup: limits.TenantLimitsLookup)."""
        async with self._database.tenant(tenant_id) as connection:
            return await store.tenant_limits(connection, tenant_id)

    async def update_tenant_limits(
        self,
        tenant_id: uuid.UUID,
        limits: TenantLimits,
        *,
        only: Collection[str] | None = None,
        actor: str,
    ) -> Tenant:
        """Set the tenant's own limits: all of them (None: the server's default), or `only`
        those named. InvalidArgumentError (field `limits.<name>`) for a limit out of range: a
        burst below 1, anything below 0."""
        async with self._database.tenant(tenant_id) as connection:
            tenant = await store.update_tenant_limits(
                connection, tenant_id, limits, only=only, actor=actor
            )
        await self._announce(Invalidation(tenant_id))
        return tenant

    async def create_api_key(
        self,
        tenant: uuid.UUID | str,
        /,
        *,
        role: Role,
        description: str = "",
        expires_at: datetime | None = None,
        workflow_ids: Sequence[uuid.UUID] | None = None,
        actor: str,
    ) -> tuple[ApiKey, str]:
        """A new key for the tenant (its id; or its name, for an operator's CLI): its record,
        and the key, shown once. InvalidArgumentError for an `expires_at` not in the future
        (field `expires_at`) or a workflow the tenant does not have (`workflow_ids`)."""
        tenant_id = tenant if isinstance(tenant, uuid.UUID) else (await self.find_tenant(tenant)).id
        async with self._database.tenant(tenant_id) as connection:
            return await store.create_api_key(
                connection,
                tenant_id,
                role=role,
                description=description,
                expires_at=expires_at,
                workflow_ids=workflow_ids,
                actor=actor,
            )

    async def list_api_keys(self, tenant_id: uuid.UUID) -> list[ApiKey]:
        """Every key of the tenant, revoked and expired ones included (their records only)."""
        async with self._database.tenant(tenant_id) as connection:
            return await store.list_api_keys(connection, tenant_id)

    async def revoke_api_key(
        self, tenant_id: uuid.UUID, key_id: uuid.UUID, *, actor: str
    ) -> ApiKey:
        """Revoke the tenant's key; every server refuses it within a second. Revoking twice
        changes nothing (and announces it again). NotFoundError for another tenant's key."""
        async with self._database.tenant(tenant_id) as connection:
            revoked = await store.revoke_api_key(connection, tenant_id, key_id, actor=actor)
        await self._announce(Invalidation(tenant_id, key_id))
        return revoked

    async def rotate_api_key(
        self, tenant_id: uuid.UUID, key_id: uuid.UUID, *, grace: timedelta, actor: str
    ) -> tuple[ApiKey, str, ApiKey]:
        """A new key like the old one (role, description, workflows) and its secret; the old
        key now ends `grace` (0 to 30 days, else InvalidArgumentError `grace_period`) from now,
        or sooner. FailedPreconditionError `api_key.revoked` for a revoked key, NotFoundError for
        another tenant's."""
        async with self._database.tenant(tenant_id) as connection:
            new, secret, old = await store.rotate_api_key(
                connection, tenant_id, key_id, grace=grace, actor=actor
            )
        await self._announce(Invalidation(tenant_id, key_id))
        return new, secret, old

    async def authenticate(self, key: str) -> Principal:
        """The principal of a live key, looked up now (no cache: for commands that check one
        key once); UnauthenticatedError for anything else."""
        async with self._database.system() as connection:
            record = await store.find_api_key(connection, key)
        return principal_of_key(record, datetime.now(UTC))

    async def _announce(self, invalidation: Invalidation) -> None:
        if self._invalidations is not None:
            await self._invalidations.publish(invalidation)

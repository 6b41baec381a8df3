"""Workflows: validated specs, stored as numbered versions."""

from __future__ import annotations

import uuid
from typing import Any

from agentflow_grpc.caching.workflows import WorkflowVersionCache
from agentflow_grpc.model.errors import InvalidSpecError
from agentflow_grpc.model.records import Principal, Workflow, WorkflowVersion
from agentflow_grpc.spec import Limits, PluginCatalog, ValidationResult, WorkflowSpec, validate_spec
from agentflow_grpc.storage import sources as source_store
from agentflow_grpc.storage import workflows as store
from agentflow_grpc.storage.database import Connection, Database
from agentflow_grpc.storage.pagination import Page


class WorkflowService:
    def __init__(
        self,
        database: Database,
        *,
        plugins: PluginCatalog,
        limits: Limits,
        versions: WorkflowVersionCache,
    ) -> None:
        self._database = database
        self._plugins = plugins
        self._limits = limits
        self._versions = versions  # the run path's cache of current versions: kept true here

    async def validate(self, principal: Principal, document: Any) -> ValidationResult:
        """Every violation of `document`, source references checked against the tenant's."""
        async with self._database.tenant(principal.tenant_id) as connection:
            return await self._validate(connection, principal, document)

    async def create(
        self, principal: Principal, document: Any, *, request_id: str | None = None
    ) -> Workflow:
        """Version 1 of a new workflow; a `request_id` seen before returns what it created."""
        async with self._database.tenant(principal.tenant_id) as connection:
            spec = _valid(await self._validate(connection, principal, document))
            return await store.create(
                connection,
                principal.tenant_id,
                name=spec.name,
                spec=spec.to_document(),
                spec_hash=spec.content_hash,
                actor=principal.actor,
                request_id=request_id,
            )

    async def get(self, principal: Principal, workflow_id: uuid.UUID) -> Workflow:
        async with self._database.tenant(principal.tenant_id) as connection:
            return await store.get(connection, principal.tenant_id, workflow_id)

    async def list(
        self,
        principal: Principal,
        *,
        page_size: int = 0,
        page_token: str = "",
        name: str | None = None,
        show_deleted: bool = False,
    ) -> Page[Workflow]:
        async with self._database.tenant(principal.tenant_id) as connection:
            return await store.list_workflows(
                connection,
                principal.tenant_id,
                size=page_size,
                token=page_token,
                name=name,
                show_deleted=show_deleted,
            )

    async def update(
        self, principal: Principal, workflow_id: uuid.UUID, document: Any, *, etag: str | None
    ) -> Workflow:
        """A new version with `document` as its spec (none if the spec is unchanged)."""
        async with self._database.tenant(principal.tenant_id) as connection:
            spec = _valid(await self._validate(connection, principal, document))
            updated = await store.update(
                connection,
                principal.tenant_id,
                workflow_id,
                name=spec.name,
                spec=spec.to_document(),
                spec_hash=spec.content_hash,
                etag=etag,
                actor=principal.actor,
            )
        await self._forget_current(principal, workflow_id)  # once committed
        return updated

    async def delete(
        self, principal: Principal, workflow_id: uuid.UUID, *, etag: str | None
    ) -> Workflow:
        async with self._database.tenant(principal.tenant_id) as connection:
            deleted = await store.delete(
                connection, principal.tenant_id, workflow_id, etag=etag, actor=principal.actor
            )
        await self._forget_current(principal, workflow_id)
        return deleted

    async def _forget_current(self, principal: Principal, workflow_id: uuid.UUID) -> None:
        await self._versions.forget_current(principal.tenant_id, workflow_id)

    async def list_versions(
        self,
        principal: Principal,
        workflow_id: uuid.UUID,
        *,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[WorkflowVersion]:
        async with self._database.tenant(principal.tenant_id) as connection:
            return await store.list_versions(
                connection, principal.tenant_id, workflow_id, size=page_size, token=page_token
            )

    async def _validate(
        self, connection: Connection, principal: Principal, document: Any
    ) -> ValidationResult:
        sources = await source_store.types_by_name(connection, principal.tenant_id)
        return validate_spec(document, sources=sources, plugins=self._plugins, limits=self._limits)


def _valid(result: ValidationResult) -> WorkflowSpec:
    if result.spec is None or not result.ok:
        raise InvalidSpecError(result.violations)
    return result.spec

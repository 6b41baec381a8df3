"""Sources: provider configurations, checked by their adapter, secrets sealed at rest."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agentflow_grpc.model.errors import InvalidArgumentError, SourceConfigError
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.records import Principal, StoredSource
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources.base import Checkable
from agentflow_grpc.sources.registry import SourceRegistry
from agentflow_grpc.storage import sources as store
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database
from agentflow_grpc.storage.pagination import Page

_SECRETS_CHECKED = frozenset({"webhook"})  # types whose adapter reads its secrets' values


@dataclass(frozen=True, slots=True)
class SourceCheck:
    ok: bool
    message: str
    latency_ms: float


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class SourceService:
    def __init__(self, database: Database, keyring: Keyring, registry: SourceRegistry) -> None:
        self._database = database
        self._keyring = keyring
        self._registry = registry

    async def create(
        self,
        principal: Principal,
        *,
        name: str,
        type: str,
        config: Mapping[str, Any],
        secrets: Mapping[str, str],
        description: str = "",
        request_id: str | None = None,
    ) -> StoredSource:
        """A new source; a `request_id` seen before returns the source it created."""
        await self._check(name, type, config, secrets)
        async with self._database.tenant(principal.tenant_id) as connection:
            return await store.create(
                connection,
                principal.tenant_id,
                self._keyring,
                name=name,
                type=type,
                description=description,
                config=config,
                secrets=secrets,
                actor=principal.actor,
                request_id=request_id,
            )

    async def get(self, principal: Principal, source_id: uuid.UUID) -> StoredSource:
        async with self._database.tenant(principal.tenant_id) as connection:
            return await store.get(connection, principal.tenant_id, source_id)

    async def list(
        self, principal: Principal, *, page_size: int = 0, page_token: str = ""
    ) -> Page[StoredSource]:
        async with self._database.tenant(principal.tenant_id) as connection:
            return await store.list_sources(
                connection, principal.tenant_id, size=page_size, token=page_token
            )

    async def update(
        self,
        principal: Principal,
        source_id: uuid.UUID,
        *,
        etag: str | None,
        name: str | None = None,
        description: str | None = None,
        config: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> StoredSource:
        """Change the fields given; the result is checked by the adapter as a whole."""
        async with self._database.tenant(principal.tenant_id) as connection:
            current = await store.get(connection, principal.tenant_id, source_id)
            # Secrets not being replaced are checked as present but unknown: the adapter sees
            # their names, never their values; a type that checks its secrets' form (webhook)
            # sees the stored ones.
            kept: Mapping[str, str] = dict.fromkeys(current.secret_names, "set")
            if secrets is None and current.type in _SECRETS_CHECKED:
                stored = await store.definition(
                    connection, principal.tenant_id, source_id, self._keyring
                )
                kept = {key: value.get_secret_value() for key, value in stored.secrets.items()}
            await self._check(
                name if name is not None else current.name,
                current.type,
                config if config is not None else current.config,
                secrets if secrets is not None else kept,
            )
            return await store.update(
                connection,
                principal.tenant_id,
                source_id,
                self._keyring,
                etag=etag,
                actor=principal.actor,
                name=name,
                description=description,
                config=config,
                secrets=secrets,
            )

    async def delete(
        self, principal: Principal, source_id: uuid.UUID, *, etag: str | None
    ) -> StoredSource:
        async with self._database.tenant(principal.tenant_id) as connection:
            return await store.delete(
                connection, principal.tenant_id, source_id, etag=etag, actor=principal.actor
            )

    async def test(self, principal: Principal, source_id: uuid.UUID) -> SourceCheck:
        """Connect to the source with its stored secrets and make one cheap call."""
        async with self._database.tenant(principal.tenant_id) as connection:
            definition = await store.definition(
                connection, principal.tenant_id, source_id, self._keyring
            )
        started = time.perf_counter()
        source = self._registry.open(definition)
        try:
            if not isinstance(source, Checkable):
                return SourceCheck(
                    False, f"sources of type {definition.type!r} cannot be tested", 0.0
                )
            try:
                message = await asyncio.wait_for(source.check(), timeout=30)
            except NodeFailure as exc:
                return SourceCheck(False, f"{exc.code}: {exc.message}", _since(started))
            except TimeoutError:
                return SourceCheck(False, "no answer within 30 s", _since(started))
            return SourceCheck(True, message, _since(started))
        finally:
            await source.aclose()

    async def _check(
        self, name: str, type: str, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        """The adapter's own checks, so a stored source can always be opened."""
        if type not in self._registry.types():
            known = ", ".join(self._registry.types())
            raise InvalidArgumentError(
                f"no adapter runs sources of type {type!r} (known: {known})", field="type"
            )
        try:
            definition = SourceDefinition(
                name=name, type=type, config=dict(config), secrets=dict(secrets)
            )
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = ".".join(str(part) for part in error["loc"])
            raise InvalidArgumentError(f"{field}: {error['msg']}", field=field) from None
        try:
            source = self._registry.open(definition)
        except SourceConfigError as exc:
            field = exc.field or "config"
            raise InvalidArgumentError(exc.message, field=field, code=exc.code) from None
        await source.aclose()

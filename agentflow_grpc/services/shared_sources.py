"""Opened sources shared by the runs of one tenant, until the tenant's sources change.

Opening a source builds its client (an openai client loads the TLS certificate bundle, a
PostgreSQL source opens a pool): doing that for every run costs tens of milliseconds of blocked
event loop and a new connection to the provider each time. Runs instead lease the tenant's
`SourceSet`. The set is keyed by a fingerprint of the tenant's source definitions, secrets
included (in memory only): after a source is created, changed or deleted, new runs get a new
set, and the old one is closed when the last run using it ends. Idle sets beyond `max_tenants`
are closed, least recently used first.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from agentflow_grpc.sources.base import SourceDefinition
from agentflow_grpc.sources.registry import SourceRegistry, SourceSet


@dataclass(eq=False)
class SourceLease:
    """One run's use of a tenant's sources; `release()` it when the run has ended."""

    sources: SourceSet
    _entry: _Entry
    _owner: SharedSources
    _released: bool = False

    async def release(self) -> None:
        if not self._released:
            self._released = True
            await self._owner._release(self._entry)


@dataclass(eq=False)
class _Entry:
    fingerprint: str
    sources: SourceSet
    users: int = 0
    stale: bool = False


class SharedSources:
    def __init__(self, registry: SourceRegistry, *, max_tenants: int = 256) -> None:
        self._registry = registry
        self._max_tenants = max_tenants
        self._entries: OrderedDict[uuid.UUID, _Entry] = OrderedDict()

    async def lease(
        self, tenant_id: uuid.UUID, definitions: Sequence[SourceDefinition]
    ) -> SourceLease:
        fingerprint = _fingerprint(definitions)
        entry = self._entries.get(tenant_id)
        if entry is None or entry.fingerprint != fingerprint:
            if entry is not None:
                await self._retire(entry)
            entry = _Entry(fingerprint, SourceSet(definitions, self._registry))
            self._entries[tenant_id] = entry
        self._entries.move_to_end(tenant_id)
        entry.users += 1
        await self._evict_idle()
        return SourceLease(entry.sources, entry, self)

    @property
    def tenants(self) -> int:
        return len(self._entries)

    async def close(self) -> None:
        """Close every set (at shutdown, once no run is left)."""
        entries, self._entries = list(self._entries.values()), OrderedDict()
        for entry in entries:
            await entry.sources.aclose()

    async def _release(self, entry: _Entry) -> None:
        entry.users -= 1
        if entry.stale and entry.users == 0:
            await entry.sources.aclose()

    async def _retire(self, entry: _Entry) -> None:
        """No new run gets `entry`; it closes now, or when its last run ends."""
        entry.stale = True
        if entry.users == 0:
            await entry.sources.aclose()

    async def _evict_idle(self) -> None:
        idle = [tenant for tenant, entry in self._entries.items() if entry.users == 0]
        for tenant in idle[: max(0, len(self._entries) - self._max_tenants)]:
            await self._retire(self._entries.pop(tenant))


def _fingerprint(definitions: Sequence[SourceDefinition]) -> str:
    described = [
        {
            "id": definition.id,
            "name": definition.name,
            "type": definition.type,
            "config": definition.config,
            "secrets": {key: value.get_secret_value() for key, value in definition.secrets.items()},
        }
        for definition in definitions
    ]
    canonical = json.dumps(described, sort_keys=True, default=str).encode()
    return hashlib.sha256(canonical).hexdigest()

"""Opened sources shared by the runs of one tenant, until the tenant's sources change.

Opening a source builds its client (an openai client loads the TLS certificate bundle, a
PostgreSQL source opens a pool): doing that for every run costs tens of milliseconds of blocked
event loop and a new connection to the provider each time. Runs instead lease the tenant's
`SourceSet`. The set is keyed by the tenant's sources' stamp (each live source's id and
revision, `storage.sources.stamp`): after a source is created, changed or deleted, new runs get
a new set — only then are the definitions read and their secrets opened — and the old one is
closed when the last run using it ends. Idle sets beyond `max_tenants` are closed, least
recently used first.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass

from agentflow_grpc.model.sources import SourceDefinition
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
    stamp: Hashable
    sources: SourceSet
    users: int = 0
    stale: bool = False


class SharedSources:
    def __init__(self, registry: SourceRegistry, *, max_tenants: int = 256) -> None:
        self._registry = registry
        self._max_tenants = max_tenants
        self._entries: OrderedDict[uuid.UUID, _Entry] = OrderedDict()
        self._closing: list[_Entry] = []  # retired, and used by no run: to close

    async def lease(
        self,
        tenant_id: uuid.UUID,
        stamp: Hashable,
        definitions: Callable[[], Awaitable[Sequence[SourceDefinition]]],
    ) -> SourceLease:
        """The tenant's set for `stamp`; `definitions()` is called only to build a new one."""
        entry = self._entries.get(tenant_id)
        if entry is None or entry.stamp != stamp:
            loaded = await definitions()
            entry = self._entries.get(tenant_id)  # another lease may have built it meanwhile
            if entry is None or entry.stamp != stamp:
                replaced = entry
                entry = _Entry(stamp, SourceSet(loaded, self._registry))
                self._entries[tenant_id] = entry
                if replaced is not None:
                    self._retire(replaced)
        # No await from the lookup above to here: the entry is claimed before anything else runs.
        self._entries.move_to_end(tenant_id)
        entry.users += 1
        idle = [tenant for tenant, held in self._entries.items() if held.users == 0]
        for tenant in idle[: max(0, len(self._entries) - self._max_tenants)]:
            self._retire(self._entries.pop(tenant))
        await self._close_retired()
        return SourceLease(entry.sources, entry, self)

    @property
    def tenants(self) -> int:
        return len(self._entries)

    async def close(self) -> None:
        """Close every set (at shutdown, once no run is left)."""
        for entry in self._entries.values():
            self._retire(entry)
        self._entries = OrderedDict()
        await self._close_retired()

    async def _release(self, entry: _Entry) -> None:
        entry.users -= 1
        if entry.stale and entry.users == 0:
            await entry.sources.aclose()

    def _retire(self, entry: _Entry) -> None:
        """No new run gets `entry`; it closes now if no run holds it, else with its last run."""
        entry.stale = True
        if entry.users == 0:
            self._closing.append(entry)

    async def _close_retired(self) -> None:
        closing, self._closing = self._closing, []
        for entry in closing:
            await entry.sources.aclose()

"""Runs of one tenant share its opened sources until the sources change."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.services.shared_sources import SharedSources, SourceLease
from agentflow_grpc.sources.registry import SourceRegistry


@dataclass
class Opened:
    definition: SourceDefinition
    log: list[str]

    async def aclose(self) -> None:
        self.log.append(f"closed {self.definition.config['v']}")


@dataclass
class CountingAdapter:
    log: list[str] = field(default_factory=list)
    type_name: str = "counting"

    def open(self, definition: SourceDefinition) -> Opened:
        self.log.append(f"opened {definition.config['v']}")
        return Opened(definition, self.log)


def definitions(version: int) -> list[SourceDefinition]:
    return [SourceDefinition(id="s1", name="main", type="counting", config={"v": version})]


async def lease(shared: SharedSources, tenant: uuid.UUID, version: int) -> SourceLease:
    """A lease for the sources at `version` (their stamp), loading them if needed."""

    async def load() -> list[SourceDefinition]:
        return definitions(version)

    return await shared.lease(tenant, version, load)


async def test_runs_share_a_set_until_the_sources_change() -> None:
    adapter = CountingAdapter()
    shared = SharedSources(SourceRegistry([adapter]))
    tenant = uuid.uuid4()
    first = await lease(shared, tenant, 1)
    second = await lease(shared, tenant, 1)
    assert first.sources is second.sources
    await first.sources.get("main")
    await second.sources.get("main")
    assert adapter.log == ["opened 1"]  # opened once, for both runs

    changed = await lease(shared, tenant, 2)  # a source was updated
    assert changed.sources is not first.sources
    await first.release()
    assert adapter.log == ["opened 1"]  # still in use by the second run
    await second.release()
    assert adapter.log == ["opened 1", "closed 1"]  # its last run ended
    await changed.release()
    await changed.release()  # releasing twice is harmless
    await shared.close()
    assert adapter.log == ["opened 1", "closed 1"]  # version 2 was never opened: nothing to close


async def test_idle_sets_beyond_the_limit_are_closed_least_recent_first() -> None:
    adapter = CountingAdapter()
    shared = SharedSources(SourceRegistry([adapter]), max_tenants=2)
    tenants = [uuid.uuid4() for _ in range(3)]
    for index, tenant in enumerate(tenants):
        held = await lease(shared, tenant, index)
        await held.sources.get("main")
        await held.release()
    assert shared.tenants == 2
    assert adapter.log == ["opened 0", "opened 1", "closed 0", "opened 2"]
    await shared.close()
    assert sorted(adapter.log[-2:]) == ["closed 1", "closed 2"]


async def test_sets_in_use_are_never_evicted() -> None:
    adapter = CountingAdapter()
    shared = SharedSources(SourceRegistry([adapter]), max_tenants=1)
    held = [await lease(shared, uuid.uuid4(), index) for index in range(3)]
    for each in held:
        await each.sources.get("main")
    assert shared.tenants == 3  # over the limit, but every set is held by a run
    assert not [line for line in adapter.log if line.startswith("closed")]
    for each in held:
        await each.release()
    await shared.close()
    assert sorted(line for line in adapter.log if line.startswith("closed")) == [
        "closed 0",
        "closed 1",
        "closed 2",
    ]


async def test_definitions_are_read_only_when_the_stamp_changes() -> None:
    shared = SharedSources(SourceRegistry([CountingAdapter()]))
    tenant = uuid.uuid4()
    reads: list[int] = []

    async def load() -> list[SourceDefinition]:
        reads.append(1)
        return definitions(1)

    leases = [await shared.lease(tenant, ("s1", 1), load) for _ in range(3)]
    assert len(reads) == 1
    leases.append(await shared.lease(tenant, ("s1", 2), load))
    assert len(reads) == 2
    for held in leases:
        await held.release()
    await shared.close()


async def test_concurrent_leases_of_a_new_stamp_build_one_set() -> None:
    adapter = CountingAdapter()
    shared = SharedSources(SourceRegistry([adapter]))
    tenant = uuid.uuid4()
    first, second = await asyncio.gather(lease(shared, tenant, 1), lease(shared, tenant, 1))
    assert first.sources is second.sources
    await first.sources.get("main")
    await first.release()
    await second.release()
    await shared.close()
    assert adapter.log == ["opened 1", "closed 1"]  # the one set, closed once: nothing leaked

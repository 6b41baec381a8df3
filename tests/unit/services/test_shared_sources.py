"""Runs of one tenant share its opened sources until the sources change."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from agentflow_grpc.services.shared_sources import SharedSources
from agentflow_grpc.sources.base import SourceDefinition
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


async def test_runs_share_a_set_until_the_sources_change() -> None:
    adapter = CountingAdapter()
    shared = SharedSources(SourceRegistry([adapter]))
    tenant = uuid.uuid4()
    first = await shared.lease(tenant, definitions(1))
    second = await shared.lease(tenant, definitions(1))
    assert first.sources is second.sources
    await first.sources.get("main")
    await second.sources.get("main")
    assert adapter.log == ["opened 1"]  # opened once, for both runs

    changed = await shared.lease(tenant, definitions(2))  # a source was updated
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
        lease = await shared.lease(tenant, definitions(index))
        await lease.sources.get("main")
        await lease.release()
    assert shared.tenants == 2
    assert adapter.log == ["opened 0", "opened 1", "closed 0", "opened 2"]
    await shared.close()
    assert sorted(adapter.log[-2:]) == ["closed 1", "closed 2"]


async def test_sets_in_use_are_never_evicted() -> None:
    adapter = CountingAdapter()
    shared = SharedSources(SourceRegistry([adapter]), max_tenants=1)
    held = [await shared.lease(uuid.uuid4(), definitions(index)) for index in range(3)]
    assert shared.tenants == 3
    for lease in held:
        await lease.release()
    await shared.close()

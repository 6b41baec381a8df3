"""The connection pool under load: it queues work beyond its size, and says so when it must.

More transactions than connections wait their turn (never more connections than `max_size`
are opened); a caller who waits longer than `acquire_timeout` gets UnavailableError naming the
timeout, and the pool serves again once connections come back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from support.storage import ACTOR, new_tenant

from agentflow_grpc.model.errors import UnavailableError
from agentflow_grpc.storage import workflows
from agentflow_grpc.storage.database import Database

TASKS = 40
SLEEP = 0.05


@pytest.fixture
async def small_pool(migrated_dsn: str, owner: asyncpg.Connection) -> AsyncIterator[Database]:
    database = await Database.connect(migrated_dsn, min_size=1, max_size=2, acquire_timeout=30)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def impatient_pool(migrated_dsn: str, owner: asyncpg.Connection) -> AsyncIterator[Database]:
    database = await Database.connect(migrated_dsn, min_size=1, max_size=2, acquire_timeout=0.2)
    try:
        yield database
    finally:
        await database.close()


async def agentflow_sessions(owner: asyncpg.Connection) -> int:
    """Server sessions of AgentFlow pools in this database (the test's pool is the only one)."""
    return int(
        await owner.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'agentflow' AND datname = current_database()"
        )
    )


async def test_an_exhausted_pool_queues_transactions_instead_of_failing_them(
    small_pool: Database, owner: asyncpg.Connection
) -> None:
    tenant = await new_tenant(small_pool, "busy")
    async with small_pool.tenant(tenant.id) as c:
        created = await workflows.create(
            c, tenant.id, name="wf", spec={"name": "wf"}, spec_hash="h", actor=ACTOR
        )

    in_flight = peak_in_flight = 0
    pids: set[int] = set()
    pool_sizes: list[int] = []
    session_counts: list[int] = []
    load_done = asyncio.Event()

    async def short_transaction() -> str:
        nonlocal in_flight, peak_in_flight
        async with small_pool.tenant(tenant.id) as c:
            in_flight += 1
            peak_in_flight = max(peak_in_flight, in_flight)
            pids.add(c.get_server_pid())
            pool_sizes.append(small_pool.pool.get_size())
            try:
                await c.execute("SELECT pg_sleep($1)", SLEEP)
                return (await workflows.get(c, tenant.id, created.id)).name
            finally:
                in_flight -= 1

    async def sample_sessions() -> None:
        """Count the server sessions while the load runs (sampling, not synchronisation)."""
        while not load_done.is_set():
            session_counts.append(await agentflow_sessions(owner))
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample_sessions())
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        names = await asyncio.gather(*(short_transaction() for _ in range(TASKS)))
    finally:
        load_done.set()
        await sampler
    elapsed = loop.time() - started

    assert names == ["wf"] * TASKS
    assert peak_in_flight == 2
    assert 1 <= len(pids) <= 2
    assert max(pool_sizes) <= 2
    assert session_counts, "the sampler never ran"
    assert max(session_counts) <= 2
    # Two connections, forty sleeps: the work was queued, not run all at once.
    assert elapsed >= TASKS / 2 * SLEEP * 0.95


async def test_waiting_longer_than_acquire_timeout_is_unavailable_until_a_connection_returns(
    impatient_pool: Database, owner: asyncpg.Connection
) -> None:
    tenant = await new_tenant(impatient_pool, "starved")
    holding = [asyncio.Event(), asyncio.Event()]
    release = asyncio.Event()

    async def hold(acquired: asyncio.Event) -> int:
        async with impatient_pool.connection() as c:
            acquired.set()
            await release.wait()
            return int(await c.fetchval("SELECT 1"))

    holders = [asyncio.create_task(hold(acquired)) for acquired in holding]
    try:
        await asyncio.gather(*(acquired.wait() for acquired in holding))
        assert impatient_pool.pool.get_size() == 2

        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(UnavailableError, match=r"within 0\.2 s") as raised:
            async with impatient_pool.tenant(tenant.id):
                pytest.fail("a third connection was handed out")
        assert loop.time() - started >= 0.2 * 0.95
        assert raised.value.code == "unavailable"
        assert raised.value.__cause__ is None

        with pytest.raises(UnavailableError, match=r"within 0\.2 s"):
            async with impatient_pool.connection():
                pytest.fail("a third connection was handed out")
    finally:
        release.set()
        results = await asyncio.gather(*holders)

    assert results == [1, 1]
    async with impatient_pool.tenant(tenant.id) as c:
        assert await c.fetchval("SELECT current_setting('agentflow.tenant_id')") == str(tenant.id)
    assert await agentflow_sessions(owner) <= 2

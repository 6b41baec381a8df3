"""A tenant's own limits over the server's (Tenant.limits, set through TenantService), in the
limiter on the real PostgreSQL and Valkey: requests, concurrent executions and tokens per day;
a change reaching another replica's limiter at once through the invalidation channel; the
server's limits when the tenant's cannot be read."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as redis
import structlog
from support.api_helpers import eventually
from support.limits import KEYS, SLOW_RATE, client_of, new_id
from support.storage import ACTOR

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.limits import (
    KEY_CONCURRENCY,
    TENANT_CONCURRENCY,
    TENANT_RATE_LIMITED,
    TOKENS_PER_DAY,
    Invalidations,
    Limiter,
    LimitPolicy,
)
from agentflow_grpc.model.errors import ResourceExhaustedError
from agentflow_grpc.model.records import Tenant, TenantLimits
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.services.tenants import TenantService
from agentflow_grpc.storage.database import Database

# The server's limits: generous, so that whatever refuses in these tests is a tenant's own.
SERVER = LimitPolicy(
    tenant_requests_per_second=1000,
    tenant_request_burst=1000,
    key_requests_per_second=1000,
    key_request_burst=1000,
    tenant_max_concurrent_executions=100,
    key_max_concurrent_executions=100,
    tenant_tokens_per_day=0,
)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    connection = client_of(redis_url)
    try:
        yield connection
    finally:
        await connection.aclose()


def test_a_tenants_own_limits_replace_the_defaults_they_name() -> None:
    own = TenantLimits(request_burst=3, key_max_concurrent_executions=0, tokens_per_day=500)
    assert SERVER.for_tenant(own) == LimitPolicy(
        tenant_requests_per_second=1000,
        tenant_request_burst=3,
        key_requests_per_second=1000,
        key_request_burst=1000,
        tenant_max_concurrent_executions=100,
        key_max_concurrent_executions=0,
        tenant_tokens_per_day=500,
    )
    assert SERVER.for_tenant(TenantLimits()) is SERVER


async def test_a_tenants_own_limits_decide_where_set_and_the_servers_elsewhere(
    client: redis.Redis, database: Database, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    tenants = TenantService(database)
    await tenants.update_tenant_limits(
        tenant_a.id,
        TenantLimits(
            requests_per_second=SLOW_RATE,
            request_burst=2,
            max_concurrent_executions=1,
            tokens_per_day=10,
        ),
        actor=ACTOR,
    )
    limiter = Limiter(
        client, SERVER, keys=KEYS, metrics=Metrics(), tenant_limits=tenants.tenant_limits
    )

    for _ in range(2):
        await limiter.admit_request(tenant_a.id, new_id())
    with pytest.raises(ResourceExhaustedError) as refused:
        await limiter.admit_request(tenant_a.id, new_id())
    assert refused.value.code == TENANT_RATE_LIMITED
    assert "at most 0.001 a second" in refused.value.message
    for _ in range(20):  # the other tenant: the server's limits
        await limiter.admit_request(tenant_b.id, new_id())

    async with limiter.execution_slot(tenant_a.id, None, new_id()):
        with pytest.raises(ResourceExhaustedError) as full:
            await limiter.acquire_execution_slot(tenant_a.id, None, new_id())
        assert full.value.code == TENANT_CONCURRENCY
        async with limiter.execution_slot(tenant_b.id, None, new_id()):
            pass
    async with limiter.execution_slot(tenant_a.id, None, new_id()):  # given back
        pass

    # The server counts no tokens (no default quota); the tenant's own quota does.
    assert await limiter.add_tokens(tenant_a.id, 10) == 10
    with pytest.raises(ResourceExhaustedError) as spent:
        await limiter.check_tokens(tenant_a.id)
    assert spent.value.code == TOKENS_PER_DAY
    assert "its 10 tokens for today" in spent.value.message
    assert await limiter.add_tokens(tenant_b.id, 10**9) is None
    await limiter.check_tokens(tenant_b.id)


async def test_a_slot_is_given_back_after_the_tenants_limit_changed(
    client: redis.Redis, database: Database, tenant_a: Tenant
) -> None:
    tenants = TenantService(database)
    limit_one = TenantLimits(max_concurrent_executions=1, key_max_concurrent_executions=1)
    await tenants.update_tenant_limits(tenant_a.id, limit_one, actor=ACTOR)
    limiter = Limiter(
        client,
        SERVER,
        keys=KEYS,
        metrics=Metrics(),
        tenant_limits=tenants.tenant_limits,
        limits_cache_seconds=0,
    )
    key, running = new_id(), new_id()
    await limiter.acquire_execution_slot(tenant_a.id, key, running)
    # Lifted (unlimited) while the run holds its slot, then put back: another replica that
    # saw the run end gives its slot back from both sets all the same.
    unlimited = TenantLimits(max_concurrent_executions=0, key_max_concurrent_executions=0)
    await tenants.update_tenant_limits(tenant_a.id, unlimited, actor=ACTOR)
    await limiter.release_execution_slot(tenant_a.id, key, running)
    await tenants.update_tenant_limits(tenant_a.id, limit_one, actor=ACTOR)
    async with limiter.execution_slot(tenant_a.id, key, new_id()):
        pass


async def test_a_tenant_may_be_given_more_than_the_server_default(
    client: redis.Redis, database: Database, tenant_a: Tenant
) -> None:
    strict = LimitPolicy(key_max_concurrent_executions=1)
    tenants = TenantService(database)
    await tenants.update_tenant_limits(
        tenant_a.id, TenantLimits(key_max_concurrent_executions=0), actor=ACTOR
    )
    limiter = Limiter(
        client, strict, keys=KEYS, metrics=Metrics(), tenant_limits=tenants.tenant_limits
    )
    key = new_id()
    slots = [await limiter.acquire_execution_slot(tenant_a.id, key, new_id()) for _ in range(3)]
    for slot in slots:
        await slot.release()
    elsewhere = new_id()  # a tenant that set nothing (none in the database): one at a time
    async with limiter.execution_slot(elsewhere, key, new_id()):
        with pytest.raises(ResourceExhaustedError) as refused:
            await limiter.acquire_execution_slot(elsewhere, key, new_id())
    assert refused.value.code == KEY_CONCURRENCY


async def test_a_change_on_one_replica_reaches_the_limiter_of_another_at_once(
    redis_url: str, database: Database, tenant_a: Tenant
) -> None:
    channel = RedisKeys(f"test-{uuid.uuid4().hex[:8]}")
    clients = [client_of(redis_url), client_of(redis_url)]
    changing, limiting = (Invalidations(client, channel) for client in clients)
    tenants = TenantService(database, invalidations=changing)
    limiter = Limiter(
        clients[1],
        SERVER,
        keys=KEYS,
        metrics=Metrics(),
        tenant_limits=tenants.tenant_limits,
        invalidations=limiting,
        limits_cache_seconds=3600,  # only the message can make it read them again
    )
    for invalidations in (changing, limiting):
        invalidations.start()
    try:
        await eventually(_live(limiting), timeout=5)
        assert await limiter.policy_for(tenant_a.id) == SERVER  # read, and kept

        await tenants.update_tenant_limits(tenant_a.id, TenantLimits(request_burst=1), actor=ACTOR)

        changed = await eventually(_policy_burst(limiter, tenant_a.id, 1), timeout=1)
        assert changed == SERVER.for_tenant(TenantLimits(request_burst=1))
    finally:
        for invalidations in (changing, limiting):
            await invalidations.close()
        for client in clients:
            await client.aclose()


def _live(invalidations: Invalidations) -> Callable[[], Awaitable[bool]]:
    async def live() -> bool:
        return invalidations.live

    return live


def _policy_burst(
    limiter: Limiter, tenant_id: uuid.UUID, burst: int
) -> Callable[[], Awaitable[LimitPolicy | None]]:
    """The limiter's policy for the tenant once its request burst is `burst`, else None."""

    async def policy() -> LimitPolicy | None:
        current = await limiter.policy_for(tenant_id)
        return current if current.tenant_request_burst == burst else None

    return policy


async def test_when_the_tenants_limits_cannot_be_read_the_servers_apply_with_one_warning(
    client: redis.Redis, migrated_dsn: str, tenant_a: Tenant
) -> None:
    closed = await Database.connect(migrated_dsn, min_size=1, max_size=1, acquire_timeout=1)
    await closed.close()
    strict = LimitPolicy(tenant_requests_per_second=SLOW_RATE, tenant_request_burst=1)
    limiter = Limiter(
        client,
        strict,
        keys=KEYS,
        metrics=Metrics(),
        tenant_limits=TenantService(closed).tenant_limits,
    )
    with structlog.testing.capture_logs() as logs:
        await limiter.admit_request(tenant_a.id, None)
        with pytest.raises(ResourceExhaustedError):
            await limiter.admit_request(tenant_a.id, None)
    warnings = [entry for entry in logs if entry["event"] == "limits.tenant_limits_unavailable"]
    assert len(warnings) == 1
    assert warnings[0]["tenant_id"] == str(tenant_a.id)

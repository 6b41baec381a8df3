"""Requests per second with a burst, per tenant and per API key, against a real Valkey: the burst
then the rate, exact counts under concurrent load from two "replicas", retry-after values."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import pytest
from support.api_helpers import eventually
from support.limits import SLOW_RATE, new_id, replicas

from agentflow_grpc.limits import KEY_RATE_LIMITED, TENANT_RATE_LIMITED, LimitPolicy
from agentflow_grpc.model.errors import ResourceExhaustedError


async def admitted(call: Awaitable[None]) -> bool:
    try:
        await call
    except ResourceExhaustedError:
        return False
    return True


async def test_the_burst_passes_then_the_rate_decides(redis_url: str) -> None:
    policy = LimitPolicy(tenant_requests_per_second=20, tenant_request_burst=5)
    async with replicas(redis_url, policy, count=1) as (limiter,):
        tenant = new_id()
        for _ in range(5):
            await limiter.admit_request(tenant, None)
        with pytest.raises(ResourceExhaustedError) as refused:
            await limiter.admit_request(tenant, None)
        assert refused.value.code == TENANT_RATE_LIMITED
        # One token comes back every 1/20 s: the wait is at most that, and real.
        assert 0 < refused.value.retry_after <= 0.05 + 1e-6
        waited = time.monotonic()

        async def admitted_again() -> bool:
            return await admitted(limiter.admit_request(tenant, None))

        await eventually(admitted_again, timeout=2, interval=0.01)
        assert time.monotonic() - waited >= refused.value.retry_after * 0.5
        # Just admitted by the one token that came back: the next one is refused again.
        with pytest.raises(ResourceExhaustedError):
            await limiter.admit_request(tenant, None)


async def test_exactly_the_burst_passes_under_concurrent_load_from_two_replicas(
    redis_url: str,
) -> None:
    policy = LimitPolicy(tenant_requests_per_second=SLOW_RATE, tenant_request_burst=50)
    async with replicas(redis_url, policy, count=2) as (first, second):
        tenant = new_id()
        calls = [(first if n % 2 else second).admit_request(tenant, None) for n in range(200)]
        results = await asyncio.gather(*(admitted(call) for call in calls))
        assert results.count(True) == 50
        assert results.count(False) == 150


async def test_a_key_over_its_rate_is_refused_and_leaves_its_tenant_and_other_keys_alone(
    redis_url: str,
) -> None:
    policy = LimitPolicy(
        tenant_requests_per_second=SLOW_RATE,
        tenant_request_burst=10,
        key_requests_per_second=SLOW_RATE,
        key_request_burst=3,
    )
    async with replicas(redis_url, policy, count=1) as (limiter,):
        tenant, busy_key, other_key = new_id(), new_id(), new_id()
        for _ in range(3):
            await limiter.admit_request(tenant, busy_key)
        for _ in range(5):  # refused calls take nothing from the tenant's burst
            with pytest.raises(ResourceExhaustedError) as refused:
                await limiter.admit_request(tenant, busy_key)
            assert refused.value.code == KEY_RATE_LIMITED
            assert refused.value.retry_after > 900  # 1 / 0.001 s for the next token
        # The tenant has 10 - 3 = 7 left; the other key may use 3 of them.
        for _ in range(3):
            await limiter.admit_request(tenant, other_key)
        # Calls with no key (the tenant's own) use the remaining 4, then the tenant is full.
        for _ in range(4):
            await limiter.admit_request(tenant, None)
        with pytest.raises(ResourceExhaustedError) as refused:
            await limiter.admit_request(tenant, new_id())
        assert refused.value.code == TENANT_RATE_LIMITED


async def test_tenants_are_limited_apart(redis_url: str) -> None:
    policy = LimitPolicy(tenant_requests_per_second=SLOW_RATE, tenant_request_burst=2)
    async with replicas(redis_url, policy, count=1) as (limiter,):
        busy, quiet = new_id(), new_id()
        for _ in range(2):
            await limiter.admit_request(busy, None)
        with pytest.raises(ResourceExhaustedError):
            await limiter.admit_request(busy, None)
        for _ in range(2):
            await limiter.admit_request(quiet, None)


async def test_zero_means_unlimited(redis_url: str) -> None:
    async with replicas(redis_url, LimitPolicy(), count=1) as (limiter,):
        tenant = new_id()
        await asyncio.gather(*(limiter.admit_request(tenant, new_id()) for _ in range(300)))
        assert limiter.guard.failures == 0

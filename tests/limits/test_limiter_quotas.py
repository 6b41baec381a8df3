"""Tokens per day per tenant, against a real Valkey: counted, refused once used up until the next
UTC midnight, per tenant, per day."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from support.limits import KEYS, client_of, new_id, replicas

from agentflow_grpc.limits import TOKENS_PER_DAY, LimitPolicy
from agentflow_grpc.limits.guard import FailOpen
from agentflow_grpc.limits.quotas import TokenQuota
from agentflow_grpc.limits.scripts import Scripts
from agentflow_grpc.model.errors import ResourceExhaustedError


async def test_a_tenant_is_refused_once_its_tokens_for_the_day_are_used(redis_url: str) -> None:
    async with replicas(redis_url, LimitPolicy(tenant_tokens_per_day=1000)) as (first, second):
        tenant, other = new_id(), new_id()
        await first.check_tokens(tenant)
        assert await first.add_tokens(tenant, 600) == 600
        await second.check_tokens(tenant)  # 600 of 1000: still allowed
        # Runs that end at once on two replicas are both counted.
        totals = await asyncio.gather(first.add_tokens(tenant, 300), second.add_tokens(tenant, 300))
        assert sorted(total or 0 for total in totals) == [900, 1200]
        assert await first.tokens_used(tenant) == 1200
        with pytest.raises(ResourceExhaustedError) as refused:
            await second.check_tokens(tenant)
        assert refused.value.code == TOKENS_PER_DAY
        now = datetime.now(UTC)
        until_midnight = 86_400 - (now.hour * 3600 + now.minute * 60 + now.second)
        assert abs(refused.value.retry_after - until_midnight) <= 2
        await first.check_tokens(other)  # another tenant has its own quota


async def test_each_utc_day_has_its_own_count(redis_url: str) -> None:
    client = client_of(redis_url)
    try:
        day = datetime(2030, 1, 1, 23, 59, 30, tzinfo=UTC)
        quota = TokenQuota(Scripts.register(client), FailOpen(), KEYS, clock=lambda: day)
        tenant = new_id()
        await quota.add(tenant, 100, 100)
        with pytest.raises(ResourceExhaustedError) as refused:
            await quota.check(tenant, 100)
        assert refused.value.retry_after == 30  # until 2030-01-02 00:00 UTC
        key = KEYS.tenant_tokens(tenant, day.date())
        assert 86_400 < await client.ttl(key) <= 2 * 86_400  # yesterday's count goes away
        day = datetime(2030, 1, 2, 0, 0, 1, tzinfo=UTC)
        await quota.check(tenant, 100)
        assert await quota.used(tenant) == 0
    finally:
        await client.aclose()


async def test_without_a_quota_nothing_is_counted(redis_url: str) -> None:
    async with replicas(redis_url, LimitPolicy(), count=1) as (limiter,):
        tenant = new_id()
        assert await limiter.add_tokens(tenant, 10**9) is None
        await limiter.check_tokens(tenant)
        assert await limiter.tokens_used(tenant) == 0

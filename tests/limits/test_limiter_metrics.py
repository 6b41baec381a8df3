"""Every refusal of the limiter is counted in the metrics, under its scope, against a real Valkey:
requests per tenant and per key, concurrent executions per tenant and per key, tokens per day,
and provider calls a source's limits hold back."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import pytest
from support.limits import KEYS, SLOW_RATE, client_of, new_id

from agentflow_grpc.limits import (
    KEY_CONCURRENCY,
    KEY_RATE_LIMITED,
    TENANT_CONCURRENCY,
    TENANT_RATE_LIMITED,
    TOKENS_PER_DAY,
    Limiter,
    LimitPolicy,
)
from agentflow_grpc.model.errors import ResourceExhaustedError
from agentflow_grpc.observability.metric_names import LIMIT_SCOPES
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.base import ProviderLimits

T = TypeVar("T")

POLICY = LimitPolicy(
    tenant_requests_per_second=SLOW_RATE,
    tenant_request_burst=3,
    key_requests_per_second=SLOW_RATE,
    key_request_burst=1,
    tenant_max_concurrent_executions=2,
    key_max_concurrent_executions=1,
    tenant_tokens_per_day=10,
)


async def refused(call: Awaitable[T]) -> str:
    with pytest.raises(ResourceExhaustedError) as refusal:
        await call
    return refusal.value.code


async def test_each_refusal_is_counted_under_its_scope(redis_url: str) -> None:
    metrics = Metrics()
    client = client_of(redis_url)
    limiter = Limiter(client, POLICY, keys=KEYS, metrics=metrics)
    try:
        tenant, key = new_id(), new_id()
        await limiter.admit_request(tenant, key)
        assert await refused(limiter.admit_request(tenant, key)) == KEY_RATE_LIMITED
        await limiter.admit_request(tenant, new_id())
        await limiter.admit_request(tenant, new_id())
        assert await refused(limiter.admit_request(tenant, new_id())) == TENANT_RATE_LIMITED

        slots = [await limiter.acquire_execution_slot(tenant, key, new_id())]
        assert await refused(limiter.acquire_execution_slot(tenant, key, new_id())) == (
            KEY_CONCURRENCY
        )
        slots.append(await limiter.acquire_execution_slot(tenant, new_id(), new_id()))
        assert await refused(limiter.acquire_execution_slot(tenant, None, new_id())) == (
            TENANT_CONCURRENCY
        )
        for slot in slots:
            await slot.release()

        await limiter.add_tokens(tenant, 10)
        assert await refused(limiter.check_tokens(tenant)) == TOKENS_PER_DAY

        source, limits = str(new_id()), ProviderLimits(requests_per_minute=1)
        assert await limiter.providers.acquire(source, limits) == 0
        assert await limiter.providers.acquire(source, limits) > 0  # held back
    finally:
        await client.aclose()

    counted = {
        scope: metrics.registry.get_sample_value(
            "agentflow_rate_limit_refusals_total", {"scope": scope}
        )
        for scope in LIMIT_SCOPES
    }
    assert counted == {
        "tenant_requests": 1,
        "api_key_requests": 1,
        "tenant_executions": 1,
        "api_key_executions": 1,
        "tenant_tokens": 1,
        "source_calls": 1,
        "server_executions": 0,  # the server's own cap: services/admission.py
    }

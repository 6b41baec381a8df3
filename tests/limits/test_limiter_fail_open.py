"""Limits fail open: with Redis down (a closed port) or hanging (a server that never answers),
every limit allows, at once or within the limiter's timeout, and says so in one warning."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import structlog
from support.limits import KEYS, client_of, new_id
from support.network import closed_port

from agentflow_grpc.limits import Limiter, LimitPolicy
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.base import ProviderLimits

# Limits no call in these tests could pass if they were enforced.
STRICT = LimitPolicy(
    tenant_requests_per_second=0.001,
    tenant_request_burst=1,
    key_requests_per_second=0.001,
    key_request_burst=1,
    tenant_max_concurrent_executions=1,
    key_max_concurrent_executions=1,
    tenant_tokens_per_day=1,
)


async def exercise(limiter: Limiter) -> None:
    """Every kind of decision, each many times over what STRICT allows."""
    tenant, key = new_id(), new_id()
    limits = ProviderLimits(requests_per_minute=1, tokens_per_minute=1)
    for _ in range(5):
        await limiter.admit_request(tenant, key)
        slot = await limiter.acquire_execution_slot(tenant, key, new_id())
        assert await limiter.add_tokens(tenant, 1000) is None
        await limiter.check_tokens(tenant)
        assert await limiter.providers.acquire("source", limits) == 0.0
        await limiter.providers.record_tokens("source", limits, 1000)
        await slot.release()


async def test_with_redis_down_every_limit_allows_at_once_and_warns_once() -> None:
    client = client_of(f"redis://127.0.0.1:{closed_port()}/0")
    # No pause: each call really tries Redis.
    limiter = Limiter(client, STRICT, keys=KEYS, metrics=Metrics(), pause=0)
    try:
        with structlog.testing.capture_logs() as logs:
            started = time.monotonic()
            await exercise(limiter)
            assert time.monotonic() - started < 2.0
        warnings = [entry for entry in logs if entry["event"] == "limits.redis_unavailable"]
        assert len(warnings) == 1, logs
        assert warnings[0]["log_level"] == "warning"
        assert "ConnectionError" in warnings[0]["error"]
        assert limiter.guard.failures >= 30
    finally:
        await client.aclose()


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A port that accepts connections and never answers (a hung Redis); its port."""
    connections: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_hung_redis_costs_one_timeout_then_nothing_while_paused(
    silent_server: int,
) -> None:
    client = client_of(f"redis://127.0.0.1:{silent_server}/0")
    limiter = Limiter(client, STRICT, keys=KEYS, metrics=Metrics(), timeout=0.3, pause=60)
    try:
        tenant = new_id()
        started = time.monotonic()
        await limiter.admit_request(tenant, None)  # waits for the timeout, then allows
        first = time.monotonic() - started
        assert 0.25 <= first < 1.5
        assert not limiter.guard.healthy
        started = time.monotonic()
        await exercise(limiter)  # Redis is not asked again during the pause
        assert time.monotonic() - started < 0.2
    finally:
        await client.aclose()

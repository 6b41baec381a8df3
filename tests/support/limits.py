"""Limiters for tests: each on its own Redis client, as separate replicas would be."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import redis.asyncio as redis

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.limits import Limiter, LimitPolicy
from agentflow_grpc.observability.metrics import Metrics

# The keys of the limiters here: the server's default prefix (tests keep apart by new_id()).
KEYS = RedisKeys("af")

# A rate (requests or tokens a second) that gives back nothing while a test runs.
SLOW_RATE = 0.001


def client_of(url: str) -> redis.Redis:
    """A client set up as the server's (agentflow_grpc.app.open_redis)."""
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


@asynccontextmanager
async def replicas(
    url: str, policy: LimitPolicy, count: int = 2, **options: Any
) -> AsyncIterator[list[Limiter]]:
    """`count` limiters with the same policy, each with its own client (closed on exit)."""
    async with AsyncExitStack() as stack:
        limiters = []
        for _ in range(count):
            client = client_of(url)
            stack.push_async_callback(client.aclose)
            limiters.append(Limiter(client, policy, keys=KEYS, metrics=Metrics(), **options))
        yield limiters


def new_id() -> uuid.UUID:
    """A tenant, key or execution id no other test uses (the session's Valkey is shared)."""
    return uuid.uuid4()

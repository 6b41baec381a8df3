"""HealthService: AgentFlow's own report, per dependency (no API key needed)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as redis

from agentflow_grpc import __version__
from agentflow_grpc._gen.agentflow.v1 import health_pb2, health_pb2_grpc
from agentflow_grpc.api.context import Context
from agentflow_grpc.storage.database import Database

SERVING, NOT_SERVING, NOT_CONFIGURED = "SERVING", "NOT_SERVING", "NOT_CONFIGURED"


class HealthServicer(health_pb2_grpc.HealthServiceServicer):
    def __init__(
        self, database: Database, redis_client: redis.Redis, *, timeout: float = 2.0
    ) -> None:
        self._database = database
        self._redis = redis_client
        self._timeout = timeout

    async def GetHealth(
        self, request: health_pb2.GetHealthRequest, context: Context
    ) -> health_pb2.GetHealthResponse:
        dependencies = await asyncio.gather(
            self._check("database", self._database.ping),
            self._check("redis", self._redis_ping),
        )
        serving = all(d.status in (SERVING, NOT_CONFIGURED) for d in dependencies)
        return health_pb2.GetHealthResponse(
            status=SERVING if serving else NOT_SERVING,
            version=__version__,
            dependencies=dependencies,
        )

    async def _redis_ping(self) -> float:
        started = time.perf_counter()
        pong = self._redis.ping()  # typed as sync-or-async by redis-py; awaitable here
        assert inspect.isawaitable(pong)
        await pong
        return (time.perf_counter() - started) * 1000

    async def _check(
        self, name: str, ping: Callable[[], Awaitable[float]]
    ) -> health_pb2.DependencyHealth:
        try:
            latency = await asyncio.wait_for(ping(), self._timeout)
        except Exception as exc:  # health must answer, whatever the dependency does
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return health_pb2.DependencyHealth(name=name, status=NOT_SERVING, message=message[:300])
        return health_pb2.DependencyHealth(name=name, status=SERVING, latency_ms=round(latency, 3))

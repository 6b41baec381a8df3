"""HealthService: AgentFlow's own report, per dependency (no API key needed)."""

from __future__ import annotations

import asyncio

from agentflow_grpc import __version__
from agentflow_grpc._gen.agentflow.v1 import health_pb2, health_pb2_grpc
from agentflow_grpc.api.context import Context
from agentflow_grpc.storage.database import Database

SERVING, NOT_SERVING, NOT_CONFIGURED = "SERVING", "NOT_SERVING", "NOT_CONFIGURED"


class HealthServicer(health_pb2_grpc.HealthServiceServicer):
    def __init__(self, database: Database, *, timeout: float = 2.0) -> None:
        self._database = database
        self._timeout = timeout

    async def GetHealth(
        self, request: health_pb2.GetHealthRequest, context: Context
    ) -> health_pb2.GetHealthResponse:
        dependencies = [
            await self._database_health(),
            health_pb2.DependencyHealth(
                name="redis", status=NOT_CONFIGURED, message="not used by this server yet"
            ),
        ]
        serving = all(d.status in (SERVING, NOT_CONFIGURED) for d in dependencies)
        return health_pb2.GetHealthResponse(
            status=SERVING if serving else NOT_SERVING,
            version=__version__,
            dependencies=dependencies,
        )

    async def _database_health(self) -> health_pb2.DependencyHealth:
        try:
            latency = await asyncio.wait_for(self._database.ping(), self._timeout)
        except Exception as exc:  # health must answer, whatever the database does
            return health_pb2.DependencyHealth(
                name="database", status=NOT_SERVING, message=f"{type(exc).__name__}: {exc}"[:300]
            )
        return health_pb2.DependencyHealth(
            name="database", status=SERVING, latency_ms=round(latency, 3)
        )

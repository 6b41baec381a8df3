"""HealthService: AgentFlow's own report, per dependency (no API key needed); the checks are
services/health.py's."""

from __future__ import annotations

from agentflow_grpc import __version__
from agentflow_grpc._gen.agentflow.v1 import health_pb2, health_pb2_grpc
from agentflow_grpc.api.context import Context
from agentflow_grpc.api.convert_health import dependency_to_proto
from agentflow_grpc.services.health import HealthService


class HealthServicer(health_pb2_grpc.HealthServiceServicer):
    def __init__(self, health: HealthService) -> None:
        self._health = health

    async def GetHealth(
        self, request: health_pb2.GetHealthRequest, context: Context
    ) -> health_pb2.GetHealthResponse:
        report = await self._health.report()
        return health_pb2.GetHealthResponse(
            status=report.status,
            version=__version__,
            dependencies=[dependency_to_proto(d) for d in report.dependencies],
        )

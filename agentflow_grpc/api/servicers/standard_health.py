"""The standard gRPC health service (grpc.health.v1.Health) that load balancers and Envoy probe:
grpc_health's asyncio servicer, with the `List` method it lacks (it raises NotImplementedError,
which would be an INTERNAL error)."""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from agentflow_grpc.api.context import Context


class StandardHealth(HealthServicer):  # type: ignore[misc]  # grpc_health has no stubs
    def __init__(self) -> None:
        super().__init__()
        self._services = {""}  # the server as a whole, and every service given a status

    async def set(self, service: str, status: Any) -> None:
        self._services.add(service)
        await super().set(service, status)

    async def List(
        self, request: health_pb2.HealthListRequest, context: Context
    ) -> health_pb2.HealthListResponse:
        """Every service's status, as Check would answer it (NOT_SERVING once draining)."""
        statuses = {
            service: await self.Check(health_pb2.HealthCheckRequest(service=service), context)
            for service in sorted(self._services)
        }
        return health_pb2.HealthListResponse(statuses=statuses)

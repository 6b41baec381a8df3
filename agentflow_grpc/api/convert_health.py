"""A dependency's health as a message (HealthService's GetHealth, the stats' `dependencies`)."""

from __future__ import annotations

from agentflow_grpc._gen.agentflow.v1 import health_pb2
from agentflow_grpc.model.health import DependencyHealth


def dependency_to_proto(dependency: DependencyHealth) -> health_pb2.DependencyHealth:
    return health_pb2.DependencyHealth(
        name=dependency.name,
        status=dependency.status,
        latency_ms=dependency.latency_ms,
        message=dependency.message,
    )

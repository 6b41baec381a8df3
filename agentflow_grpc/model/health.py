"""The health of AgentFlow's dependencies, as HealthService and the stats dashboard report it."""

from __future__ import annotations

from dataclasses import dataclass

SERVING, NOT_SERVING, NOT_CONFIGURED = "SERVING", "NOT_SERVING", "NOT_CONFIGURED"


@dataclass(frozen=True, slots=True)
class DependencyHealth:
    name: str  # `database`, `redis`
    status: str  # SERVING, NOT_SERVING or NOT_CONFIGURED
    latency_ms: float = 0.0  # the check's round trip, when SERVING
    message: str = ""  # why not, when NOT_SERVING


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: str  # SERVING when every dependency is SERVING or NOT_CONFIGURED
    dependencies: tuple[DependencyHealth, ...]

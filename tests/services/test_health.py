"""HealthService (services/health.py): every check at once, each within its timeout; a check
that raises or does not answer is NOT_SERVING with the reason, never an error of the report.
(Over the real database and Redis: tests/api/test_auth_api.py, tests/queue/test_redis_down.py.)"""

from __future__ import annotations

import asyncio

from agentflow_grpc.model.health import DependencyHealth, HealthReport
from agentflow_grpc.services.health import HealthService


async def answers() -> float:
    return 1.23456


async def refuses() -> float:
    raise ConnectionRefusedError("connection refused on port 6379")


async def hangs() -> float:
    await asyncio.Event().wait()
    return 0.0


async def test_every_dependency_serving() -> None:
    report = await HealthService({"database": answers, "redis": answers}).report()
    assert report == HealthReport(
        "SERVING",
        (
            DependencyHealth("database", "SERVING", latency_ms=1.235),
            DependencyHealth("redis", "SERVING", latency_ms=1.235),
        ),
    )


async def test_a_failed_or_silent_check_is_not_serving_with_its_reason() -> None:
    health = HealthService({"database": answers, "redis": refuses, "other": hangs}, timeout=0.05)
    report = await health.report()
    assert report.status == "NOT_SERVING"
    database, redis, other = report.dependencies
    assert database.status == "SERVING"
    assert redis == DependencyHealth(
        "redis", "NOT_SERVING", message="ConnectionRefusedError: connection refused on port 6379"
    )
    assert (other.status, other.message) == ("NOT_SERVING", "TimeoutError")
    assert await health.dependencies() == report.dependencies

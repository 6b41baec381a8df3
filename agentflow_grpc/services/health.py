"""The health of AgentFlow's dependencies: each one checked, at once, within a timeout, with its
round trip. HealthService's GetHealth (no API key) and the stats dashboard both report it.

The checks are handed in by the composition root (`app.py`): a name and a ping, a coroutine
that answers its round trip in milliseconds or raises. A check never fails the report: an
exception, or no answer within `timeout`, is that dependency NOT_SERVING with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from agentflow_grpc.model.health import (
    NOT_CONFIGURED,
    NOT_SERVING,
    SERVING,
    DependencyHealth,
    HealthReport,
)

Ping = Callable[[], Awaitable[float]]
MESSAGE_LIMIT = 300  # characters of a failed check's message


class HealthService:
    def __init__(self, checks: Mapping[str, Ping], *, timeout: float = 2.0) -> None:
        self._checks = dict(checks)  # name → ping, in the order they are reported
        self._timeout = timeout

    async def report(self) -> HealthReport:
        """Every dependency; SERVING when each is SERVING (or NOT_CONFIGURED)."""
        dependencies = await self.dependencies()
        serving = all(d.status in (SERVING, NOT_CONFIGURED) for d in dependencies)
        return HealthReport(SERVING if serving else NOT_SERVING, dependencies)

    async def dependencies(self) -> tuple[DependencyHealth, ...]:
        checked = await asyncio.gather(
            *(self._check(name, ping) for name, ping in self._checks.items())
        )
        return tuple(checked)

    async def _check(self, name: str, ping: Ping) -> DependencyHealth:
        try:
            latency = await asyncio.wait_for(ping(), self._timeout)
        except Exception as exc:  # health must answer, whatever the dependency does
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return DependencyHealth(name, NOT_SERVING, message=message[:MESSAGE_LIMIT])
        return DependencyHealth(name, SERVING, latency_ms=round(latency, 3))

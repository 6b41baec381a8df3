"""Limits fail open: a Redis that is down, slow or refusing never stops a call.

Every Redis operation of the limiter runs through `FailOpen.call`, bounded by `timeout`. When
it fails, the caller gets None (and allows); for `pause` seconds after that Redis is not asked
at all, so a dead Redis (a connect timeout per call) cannot slow the API down. A warning is
logged at most once per `warn_every` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.limits")

T = TypeVar("T")


class FailOpen:
    def __init__(
        self, *, timeout: float = 1.0, pause: float = 5.0, warn_every: float = 60.0
    ) -> None:
        self.timeout = timeout
        self.pause = pause
        self.warn_every = warn_every
        self._asleep_until = 0.0  # monotonic time; Redis is not asked before it
        self._next_warning = 0.0
        self.failures = 0  # operations that failed or were skipped, since the start

    @property
    def healthy(self) -> bool:
        """Whether the last operation reached Redis (or none has failed yet)."""
        return time.monotonic() >= self._asleep_until

    async def call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T | None:
        """`operation()`'s result; None when Redis failed it (now, or lately): then allow."""
        if not self.healthy:
            self.failures += 1
            return None
        try:
            async with asyncio.timeout(self.timeout):
                return await operation()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(what, exc)
            return None

    def _failed(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        self.failures += 1
        self._asleep_until = now + self.pause
        if now >= self._next_warning:
            self._next_warning = now + self.warn_every
            log.warning(
                "limits.redis_unavailable",
                operation=what,
                error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                effect=f"limits are not enforced; Redis is tried again in {self.pause:g} s",
            )

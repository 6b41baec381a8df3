"""FailOpen: Redis failures become "allow" (None), Redis is left alone for the pause, then tried
again; our own bugs are not swallowed."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from support.api_helpers import eventually

from agentflow_grpc.limits.guard import FailOpen


async def test_a_failure_allows_pauses_then_redis_is_tried_again() -> None:
    guard = FailOpen(timeout=1, pause=0.2, warn_every=60)
    calls: list[str] = []

    async def down() -> int:
        calls.append("down")
        raise RedisConnectionError("Connection refused")

    async def back() -> int:
        calls.append("back")
        return 7

    assert await guard.call("take", down) is None
    assert not guard.healthy
    assert await guard.call("take", back) is None  # paused: Redis is not asked
    assert calls == ["down"]
    assert await eventually(lambda: guard.call("take", back), timeout=2, interval=0.02) == 7
    assert guard.healthy
    assert calls[0] == "down"
    assert set(calls[1:]) == {"back"}


async def test_errors_that_are_not_redis_failures_are_raised() -> None:
    guard = FailOpen()

    async def bug() -> int:
        raise ValueError("a bug in the limiter")

    with pytest.raises(ValueError, match="a bug"):
        await guard.call("take", bug)
    assert guard.healthy

"""Redis failures in the queue: one guard around every Redis call it makes.

Every call of the job queue, the run leases and the event fan-out runs inside a `RedisGuard`:
a Redis that is down, refusing or cut off (a RedisError or an OSError, a timeout among them)
comes out as `QueueUnavailableError`, an `UnavailableError` (gRPC UNAVAILABLE). So nothing
above the queue knows Redis's exceptions, and what a failure means is said where the call is
made, as it always was:

- a background start is refused, UNAVAILABLE, with nothing recorded (`JobQueue.ready`,
  `enqueue`);
- a run streamed here still runs: a lease, a heartbeat, a hand-back or a release that fails is
  passed over (`or_none`): a lease lapses by itself, a job is reclaimed after its timeout;
- a follower on another replica falls back to reading the event log;
- a worker waits and claims again; the cancel listener reconnects; publishing stops for the
  run (followers elsewhere read the log).

Unlike the limits' `FailOpen` there is no pause after a failure: each call asks Redis again,
so work resumes the moment Redis is back.
"""

from __future__ import annotations

from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

from redis.exceptions import RedisError

from agentflow_grpc.model.errors import QueueUnavailableError

T = TypeVar("T")

REDIS_FAILURES = (RedisError, OSError)


class RedisGuard:
    """`with guard:` turns a Redis failure in the block into QueueUnavailableError."""

    __slots__ = ("part",)

    def __init__(self, part: str) -> None:
        self.part = part  # what is unavailable, in the error's message: "the job queue"

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, REDIS_FAILURES):
            raise QueueUnavailableError(f"{self.part} (Redis) is unavailable: {error}") from error


async def or_none(call: Awaitable[T]) -> T | None:
    """`call`'s result, or None when Redis failed it: for calls that may be passed over."""
    try:
        return await call
    except QueueUnavailableError:
        return None

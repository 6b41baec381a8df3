"""Which replica runs an execution (a lease), and asking it to stop (a cancel request) or to
publish its events for a follower elsewhere (a watch request).

A lease is a key holding the runner's replica id, with a time to live that the runner's
heartbeat renews; a replica that dies lets it lapse. Taking one is SET NX: two replicas can
never both hold it, so an execution is never run twice at the same time. Renewing and letting
go check the holder first (Lua, atomic), so a replica whose lease lapsed cannot renew or delete
the next holder's.

A cancel request is a key the runner's heartbeat reads (so it is never lost), and a pub/sub
message that reaches the runner at once. A watch request is the same (`…:watched` with a short
time to live, renewed by the follower while it follows, and a message on `{p}:watch`): a runner
publishes a run's events to Redis only once somebody elsewhere follows it (queue/fanout.py).
Redis failing a call raises QueueUnavailableError (queue/guard.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as redis

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.model.errors import QueueUnavailableError
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.queue.guard import RedisGuard

log = get_logger("agentflow.queue")

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
CANCEL_REQUEST_TTL = 3600  # seconds a cancel request waits for its run to be picked up
WATCH_REQUEST_TTL = 60  # seconds a watch request lasts unless its follower renews it
LISTEN_WAIT = 1.0  # seconds one wait for a message lasts (below any socket timeout)


@dataclass(frozen=True, slots=True)
class RunRequests:
    """What other replicas ask of a run, as its heartbeat reads it."""

    cancel: str | None  # the reason of a cancel request
    watched: bool  # a follower elsewhere wants its events published


class RunLeases:
    def __init__(self, client: redis.Redis, keys: RedisKeys, *, replica: str, ttl: float) -> None:
        self._redis = client
        self._keys = keys
        self._guard = RedisGuard("the run-lease store")
        self.replica = replica
        self.ttl_ms = max(100, round(ttl * 1000))
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def acquire(self, execution_id: uuid.UUID) -> bool:
        """Take the lease; False when another replica holds it."""
        with self._guard:
            taken = await self._redis.set(
                self._keys.run_lease(execution_id), self.replica, nx=True, px=self.ttl_ms
            )
        return bool(taken)

    async def renew(self, execution_id: uuid.UUID) -> bool:
        """Keep the lease; False when it lapsed (and may be another's now)."""
        with self._guard:
            renewed = await self._renew(
                keys=[self._keys.run_lease(execution_id)], args=[self.replica, self.ttl_ms]
            )
        return bool(renewed)

    async def release(self, execution_id: uuid.UUID) -> None:
        with self._guard:
            await self._release(keys=[self._keys.run_lease(execution_id)], args=[self.replica])

    async def holder(self, execution_id: uuid.UUID) -> str | None:
        """The replica running it now, if any."""
        with self._guard:
            value = await self._redis.get(self._keys.run_lease(execution_id))
        return value.decode() if isinstance(value, bytes) else value

    # --- cancel requests ---

    async def request_cancel(self, execution_id: uuid.UUID, reason: str) -> None:
        with self._guard:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._keys.run_cancel(execution_id), reason, ex=CANCEL_REQUEST_TTL)
                pipe.publish(
                    self._keys.cancel_channel,
                    json.dumps({"execution_id": str(execution_id), "reason": reason}),
                )
                await pipe.execute()

    async def requests(self, execution_id: uuid.UUID) -> RunRequests:
        """The run's cancel and watch requests, in one round trip."""
        with self._guard:
            cancel, watched = await self._redis.mget(
                [self._keys.run_cancel(execution_id), self._keys.run_watched(execution_id)]
            )
        reason = cancel.decode() if isinstance(cancel, bytes) else cancel
        return RunRequests(cancel=reason, watched=watched is not None)

    # --- watch requests ---

    async def request_watch(self, execution_id: uuid.UUID) -> None:
        """Ask whoever runs it (now or after a hand-over) to publish its events; a follower
        renews this while it follows."""
        with self._guard:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._keys.run_watched(execution_id), "1", ex=WATCH_REQUEST_TTL)
                pipe.publish(self._keys.watch_channel, str(execution_id))
                await pipe.execute()

    async def listen(
        self,
        on_cancel: Callable[[uuid.UUID, str], Awaitable[None]],
        on_watch: Callable[[uuid.UUID], None],
    ) -> None:
        """Call `on_cancel` for every cancel request published and `on_watch` for every watch
        request, until cancelled; reconnects when Redis goes away and comes back."""
        while True:
            try:
                with self._guard:
                    async with self._subscription() as messages:
                        async for channel, data in messages:
                            if channel == self._keys.watch_channel:
                                with contextlib.suppress(ValueError):
                                    on_watch(uuid.UUID(data))
                                continue
                            request = json.loads(data)
                            await on_cancel(uuid.UUID(request["execution_id"]), request["reason"])
            except QueueUnavailableError as exc:
                log.warning("queue.cancel_listener_lost", error=str(exc))
                await asyncio.sleep(1)

    @contextlib.asynccontextmanager
    async def _subscription(self) -> AsyncIterator[AsyncIterator[tuple[str, str]]]:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._keys.cancel_channel, self._keys.watch_channel)

        async def messages() -> AsyncIterator[tuple[str, str]]:
            # Waiting with a timeout of its own, shorter than the client's socket timeout: a
            # quiet channel is no message, not a lost connection (`listen()` would read with the
            # socket timeout and fail every few seconds on an idle server). get_message also
            # pings on the client's health-check interval, so a dead connection is still found.
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=LISTEN_WAIT
                )
                if message is not None and message.get("type") == "message":
                    yield _text(message["channel"]), _text(message["data"])

        try:
            yield messages()
        finally:
            with contextlib.suppress(QueueUnavailableError), self._guard:
                await pubsub.aclose()  # type: ignore[no-untyped-call]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

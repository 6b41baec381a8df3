"""Which replica runs an execution (a lease), and asking it to stop (a cancel request).

A lease is a key holding the runner's replica id, with a time to live that the runner's
heartbeat renews; a replica that dies lets it lapse. Taking one is SET NX: two replicas can
never both hold it, so an execution is never run twice at the same time. Renewing and letting
go check the holder first (Lua, atomic), so a replica whose lease lapsed cannot renew or delete
the next holder's.

A cancel request is a key the runner's heartbeat reads (so it is never lost), and a pub/sub
message that reaches the runner at once. Redis failing a call raises QueueUnavailableError
(queue/guard.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

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
LISTEN_WAIT = 1.0  # seconds one wait for a cancel message lasts (below any socket timeout)


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

    async def cancel_requested(self, execution_id: uuid.UUID) -> str | None:
        with self._guard:
            value = await self._redis.get(self._keys.run_cancel(execution_id))
        return value.decode() if isinstance(value, bytes) else value

    async def listen_for_cancels(
        self, on_cancel: Callable[[uuid.UUID, str], Awaitable[None]]
    ) -> None:
        """Call `on_cancel` for every cancel request published, until cancelled; reconnects
        when Redis goes away and comes back."""
        while True:
            try:
                with self._guard:
                    async with self._subscription() as messages:
                        async for message in messages:
                            request = json.loads(message)
                            await on_cancel(uuid.UUID(request["execution_id"]), request["reason"])
            except QueueUnavailableError as exc:
                log.warning("queue.cancel_listener_lost", error=str(exc))
                await asyncio.sleep(1)

    @contextlib.asynccontextmanager
    async def _subscription(self) -> AsyncIterator[AsyncIterator[str]]:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._keys.cancel_channel)

        async def messages() -> AsyncIterator[str]:
            # Waiting with a timeout of its own, shorter than the client's socket timeout: a
            # quiet channel is no message, not a lost connection (`listen()` would read with the
            # socket timeout and fail every few seconds on an idle server). get_message also
            # pings on the client's health-check interval, so a dead connection is still found.
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=LISTEN_WAIT
                )
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    yield data.decode() if isinstance(data, bytes) else str(data)

        try:
            yield messages()
        finally:
            with contextlib.suppress(QueueUnavailableError), self._guard:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

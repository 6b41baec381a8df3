"""What every replica must forget at once, over Redis pub/sub (`{p}:invalidate`).

Servers keep API keys they looked up (services/authentication.py) and tenants' limits
(limiter.py) for a while. When one changes (a key revoked or rotated, a tenant's limits set),
the server that changed it publishes an `Invalidation`, and every server drops what it holds
of it the moment the message arrives: a revoke takes effect everywhere within a second.

That only holds while the subscription is up, so a cache may be trusted only while `live`:
subscribed, and Redis heard from (the listener pings it every `ping_every` seconds) within
`silence` seconds. Whenever the subscription starts, comes back (redis-py reconnecting on its
own says so by subscribing again) or is lost, every listener is told to forget everything
(`None`): messages may have been missed meanwhile. While it is down, a key is looked up in
PostgreSQL on every call.

A lookup that was under way while a message arrived may hold what was just forgotten: readers
note `generation` before they look something up and keep the result only if it has not moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.invalidations")

_FAILURES = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Invalidation:
    """Forget this: one API key of a tenant, or (`api_key_id` None) the tenant's limits."""

    tenant_id: uuid.UUID
    api_key_id: uuid.UUID | None = None

    def encode(self) -> str:
        document = {"tenant_id": str(self.tenant_id)}
        if self.api_key_id is not None:
            document["api_key_id"] = str(self.api_key_id)
        return json.dumps(document)

    @classmethod
    def decode(cls, data: bytes | str) -> Invalidation | None:
        """The message's invalidation; None when it is not one (then forget everything)."""
        try:
            document = json.loads(data)
            key = document.get("api_key_id")
            return cls(uuid.UUID(document["tenant_id"]), None if key is None else uuid.UUID(key))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


# Called with what to forget; None: everything (the subscription started, came back or was lost).
Forget = Callable[[Invalidation | None], None]


class Invalidations:
    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        ping_every: float = 1.0,
        silence: float = 3.0,
        retry_every: float = 1.0,
        publish_timeout: float = 1.0,
    ) -> None:
        """No I/O until `start()`. `silence`: seconds without a word from Redis after which
        the subscription counts as lost (a ping goes out every `ping_every` seconds)."""
        self._client = client
        self._channel = keys.invalidation_channel
        self._ping_every = ping_every
        self._silence = silence
        self._retry_every = retry_every
        self._publish_timeout = publish_timeout
        self._listeners: list[Forget] = []
        self._subscribed = False
        self._heard = 0.0  # monotonic time Redis last answered the subscription
        self._generation = 0
        self._lost_logged = False
        self._task: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        """Whether every invalidation published now would reach this server: caches may be
        trusted only while this holds."""
        return self._subscribed and time.monotonic() - self._heard <= self._silence

    @property
    def generation(self) -> int:
        """Moves on whenever something is forgotten: a value looked up while it moved may be
        stale, and is not to be kept."""
        return self._generation

    def on_invalidation(self, forget: Forget) -> None:
        """Call `forget` for every invalidation, here or from another server."""
        self._listeners.append(forget)

    def start(self) -> None:
        """Subscribe, in a task of its own, until `close()`; reconnects when Redis comes back."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="invalidation-listener")

    async def close(self) -> None:
        task, self._task = self._task, None
        # Cancelled until it ends: redis-py may swallow a cancellation that lands while it
        # connects (and then wait for a reply for as long as the socket timeout).
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        self._down()

    async def publish(self, invalidation: Invalidation) -> bool:
        """Forget it here at once, and tell every other server; False when Redis could not be
        told (they are told nothing: they drop it when their cache entry ends, or ignore their
        caches while they cannot hear from Redis either)."""
        self._forget(invalidation)
        try:
            async with asyncio.timeout(self._publish_timeout):
                await self._client.publish(self._channel, invalidation.encode())
        except _FAILURES as exc:
            log.warning(
                "invalidations.unpublished",
                tenant_id=str(invalidation.tenant_id),
                api_key_id=None
                if invalidation.api_key_id is None
                else str(invalidation.api_key_id),
                error=_described(exc),
                effect="other servers may go on using what they cached until it ends "
                "(AGENTFLOW_API_KEY_CACHE_SECONDS)",
            )
            return False
        return True

    def _forget(self, invalidation: Invalidation | None) -> None:
        self._generation += 1
        for forget in self._listeners:
            forget(invalidation)

    def _down(self) -> None:
        if self._subscribed:
            self._subscribed = False
            self._forget(None)

    async def _listen(self) -> None:
        while True:
            try:
                await self._subscription()
            except _FAILURES as exc:
                self._down()
                if not self._lost_logged:
                    self._lost_logged = True
                    log.warning(
                        "invalidations.lost",
                        error=_described(exc),
                        effect="API keys are looked up in PostgreSQL on every call until "
                        "Redis is back",
                    )
            await asyncio.sleep(self._retry_every)

    async def _subscription(self) -> None:
        """Listen on one subscription until Redis fails it or falls silent."""
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            heard = next_ping = time.monotonic()
            while True:
                if time.monotonic() >= next_ping:
                    await pubsub.ping()
                    next_ping = time.monotonic() + self._ping_every
                message = await pubsub.get_message(timeout=self._ping_every)
                if message is not None:
                    heard = self._heard = time.monotonic()
                    self._received(message["type"], message["data"])
                elif time.monotonic() - heard > self._silence:
                    raise TimeoutError(f"Redis has not answered for {self._silence:g} s")
        finally:
            self._down()
            with contextlib.suppress(*_FAILURES):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _received(self, kind: bytes | str, data: bytes | str) -> None:
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "message":
            self._forget(Invalidation.decode(data))
        elif kind == "subscribe":
            # The first confirmation, or redis-py subscribing again after it reconnected on its
            # own: either way, what was published before it never reached this server.
            self._forget(None)
            self._subscribed = True
            if self._lost_logged:
                self._lost_logged = False
                log.info("invalidations.live")


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

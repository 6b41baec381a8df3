"""The LLM response cache on Redis: one string per reply, `{prefix}:llmcache:{namespace}:{sha}`
(`RedisKeys.llm_response`).

Values are the reply's JSON (`CachedReply.to_dict`), set with the node's TTL (`SET … PX`). The
namespace is the tenant, so one tenant's replies are never read for another; the key is the
request's SHA-256 (`nodes.response_cache.request_key`), which holds no secret and no prompt.

Every operation is bounded by `timeout`. After a failure Redis is not asked for `pause`
seconds (operations fail at once), so that a Redis that is down costs the nodes no connect
timeouts; the nodes treat every failure as a miss and carry on. Each read is counted in the
metrics (`agentflow_cache_requests_total{cache="llm_responses"}`): a hit, a miss, or an error.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as redis

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.nodes.response_cache import CachedReply
from agentflow_grpc.observability.metric_names import LLM_RESPONSES
from agentflow_grpc.observability.metrics import Metrics

T = TypeVar("T")


class CacheUnavailableError(Exception):
    """Redis failed recently, and is not asked again before the pause ends."""


class RedisResponseCache:
    def __init__(
        self,
        client: redis.Redis,
        *,
        keys: RedisKeys,
        metrics: Metrics,
        timeout: float = 1.0,
        pause: float = 5.0,
    ) -> None:
        self._client = client
        self._keys = keys
        self._lookups = metrics.cache(LLM_RESPONSES)
        self.timeout = timeout
        self.pause = pause
        self._asleep_until = 0.0  # monotonic time; Redis is not asked before it

    def redis_key(self, namespace: str, key: str) -> str:
        return self._keys.llm_response(namespace, key)

    async def get(self, namespace: str, key: str) -> CachedReply | None:
        try:
            raw = await self._call(lambda: self._client.get(self.redis_key(namespace, key)))
            reply = None if raw is None else CachedReply.from_dict(json.loads(raw))
        except Exception:
            self._lookups.error()
            raise
        if reply is None:
            self._lookups.miss()
        else:
            self._lookups.hit()
        return reply

    async def put(self, namespace: str, key: str, reply: CachedReply, ttl: float) -> None:
        value = json.dumps(reply.to_dict(), ensure_ascii=False, separators=(",", ":"))
        milliseconds = max(1, math.ceil(ttl * 1000))
        await self._call(
            lambda: self._client.set(self.redis_key(namespace, key), value, px=milliseconds)
        )

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        if now < self._asleep_until:
            raise CacheUnavailableError(
                f"Redis failed less than {self.pause:g} s ago; asked again in "
                f"{self._asleep_until - now:.1f} s"
            )
        try:
            async with asyncio.timeout(self.timeout):
                return await operation()
        except Exception:
            self._asleep_until = time.monotonic() + self.pause
            raise

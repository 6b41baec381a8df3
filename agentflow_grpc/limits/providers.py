"""Sources' limits on provider calls (`config.limits`), in Redis: the ProviderLimiter the server
gives the source adapters (agentflow_grpc.sources.base), shared by every run of every tenant
on every replica that uses the source.

Each limit is a bucket holding one minute's worth, refilled continuously: `requests_per_minute`
calls at once at most, then one every 60/N seconds; `tokens_per_minute` the same for tokens,
which are counted after the call as the provider reported them, into debt if need be (the next
call then waits until the debt is paid back). A call goes ahead while the token bucket holds at
least one token. A call held back (told to wait) is counted in the metrics,
`agentflow_rate_limit_refusals_total{scope="source_calls"}`.
"""

from __future__ import annotations

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.limits.buckets import Bucket, take
from agentflow_grpc.limits.guard import FailOpen
from agentflow_grpc.limits.scripts import Scripts
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.base import ProviderLimits


class RedisProviderLimiter:
    def __init__(
        self, scripts: Scripts, guard: FailOpen, keys: RedisKeys, metrics: Metrics
    ) -> None:
        self._scripts = scripts
        self._guard = guard
        self._keys = keys
        self._metrics = metrics

    async def acquire(self, source_key: str, limits: ProviderLimits) -> float:
        """0.0 and one call counted, or the seconds until a call could go (nothing counted)."""
        buckets = []
        if limits.requests_per_minute > 0:
            rate = limits.requests_per_minute
            buckets.append(Bucket(self._keys.source_requests(source_key), rate / 60, rate))
        if limits.tokens_per_minute > 0:
            rate = limits.tokens_per_minute
            buckets.append(Bucket(self._keys.source_tokens(source_key), rate / 60, rate, cost=0))
        decision = await take(self._scripts, self._guard, buckets)
        if decision.allowed:
            return 0.0
        self._metrics.limit_refused("source_calls")
        return decision.retry_after

    async def record_tokens(self, source_key: str, limits: ProviderLimits, tokens: int) -> None:
        if limits.tokens_per_minute <= 0 or tokens <= 0:
            return
        rate = limits.tokens_per_minute
        bucket = Bucket(self._keys.source_tokens(source_key), rate / 60, rate, cost=tokens, need=0)
        await take(self._scripts, self._guard, [bucket], force=True)

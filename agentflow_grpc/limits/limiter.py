"""`Limiter`: every limit of the server, over one Redis client (`App.limiter`).

- `admit_request(tenant_id, api_key_id)`: requests per second with a burst, per tenant and per
  key (the API's interceptor calls it for every authenticated call).
- `acquire_execution_slot(…)` / `execution_slot(…)`: concurrent executions per tenant and key.
- `check_tokens(tenant_id)` / `add_tokens(tenant_id, n)`: tokens per day per tenant.
- `providers`: the ProviderLimiter given to source adapters (sources' own `config.limits`).

Refusals are ResourceExhaustedError (RESOURCE_EXHAUSTED, with RetryInfo carrying
`retry_after`) whose `code` names the limit; each is counted in the metrics
(`agentflow_rate_limit_refusals_total{scope}`, the scope by the code, `SCOPES`), and so is a
provider call a source's limits hold back (scope `source_calls`). Every decision is one Lua
script in Redis, so it holds across replicas. When Redis is down or slow, every limit fails
open (allows; a warning at most once a minute) — never an error, never a wait of more than
`timeout` seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

import redis.asyncio as redis

from agentflow_grpc.keyspace import Id, RedisKeys
from agentflow_grpc.limits.guard import FailOpen
from agentflow_grpc.limits.policy import LimitPolicy
from agentflow_grpc.limits.providers import RedisProviderLimiter
from agentflow_grpc.limits.quotas import TOKENS_PER_DAY, TokenQuota
from agentflow_grpc.limits.requests import KEY_RATE_LIMITED, TENANT_RATE_LIMITED, RequestLimits
from agentflow_grpc.limits.scripts import Scripts
from agentflow_grpc.limits.slots import (
    KEY_CONCURRENCY,
    TENANT_CONCURRENCY,
    ExecutionSlot,
    ExecutionSlots,
)
from agentflow_grpc.model.errors import ResourceExhaustedError
from agentflow_grpc.observability.metrics import Metrics

T = TypeVar("T")

# The scope a refusal is counted under, by its code.
SCOPES = {
    TENANT_RATE_LIMITED: "tenant_requests",
    KEY_RATE_LIMITED: "api_key_requests",
    TENANT_CONCURRENCY: "tenant_executions",
    KEY_CONCURRENCY: "api_key_executions",
    TOKENS_PER_DAY: "tenant_tokens",
}


class Limiter:
    def __init__(
        self,
        client: redis.Redis,
        policy: LimitPolicy,
        *,
        keys: RedisKeys,
        metrics: Metrics,
        timeout: float = 1.0,
        pause: float = 5.0,
        warn_every: float = 60.0,
    ) -> None:
        """No I/O: the scripts are loaded on first use. `keys` names every key (under
        `AGENTFLOW_REDIS_PREFIX`); refusals are counted in `metrics`; `timeout` bounds each
        Redis call; after a failure Redis is left alone for `pause` seconds (limits allow
        meanwhile)."""
        scripts = Scripts.register(client)
        self.policy = policy
        self._metrics = metrics
        self.guard = FailOpen(timeout=timeout, pause=pause, warn_every=warn_every)
        self._requests = RequestLimits(scripts, self.guard, keys, policy)
        self._slots = ExecutionSlots(scripts, self.guard, keys, policy)
        self._tokens = TokenQuota(scripts, self.guard, keys, policy.tenant_tokens_per_day)
        self.providers = RedisProviderLimiter(scripts, self.guard, keys, metrics)

    async def admit_request(self, tenant_id: Id, api_key_id: Id | None) -> None:
        """Count one API call. Raises ResourceExhaustedError `rate_limited.tenant` or
        `rate_limited.api_key` (retry_after: seconds until it would be admitted) when the
        tenant's or the key's rate is used up; a refused call counts against neither."""
        await self._counted(self._requests.admit(tenant_id, api_key_id))

    async def acquire_execution_slot(
        self, tenant_id: Id, api_key_id: Id | None, execution_id: Id
    ) -> ExecutionSlot:
        """A slot for one execution among the tenant's and the key's concurrent ones, taken in
        both or neither. Raises ResourceExhaustedError `concurrency_limited.tenant` or
        `concurrency_limited.api_key` (retry_after: at most 1 s) when either is full.

        Taking it again for the same `execution_id` (while held) succeeds and takes nothing
        more. The slot's lease is renewed in the background; `await slot.release()` when the
        execution has ended (it is idempotent; the slot is also an async context manager). If
        this process dies, the slot frees itself when its lease ends (60 s). `api_key_id`
        None: only the tenant's limit applies."""
        return await self._counted(self._slots.acquire(tenant_id, api_key_id, execution_id))

    @asynccontextmanager
    async def execution_slot(
        self, tenant_id: Id, api_key_id: Id | None, execution_id: Id
    ) -> AsyncIterator[ExecutionSlot]:
        """`async with limiter.execution_slot(t, k, e):` runs the body holding the slot (see
        `acquire_execution_slot`), released on the way out, however it is left."""
        slot = await self._counted(self._slots.acquire(tenant_id, api_key_id, execution_id))
        try:
            yield slot
        finally:
            await slot.release()

    async def release_execution_slot(
        self, tenant_id: Id, api_key_id: Id | None, execution_id: Id
    ) -> None:
        """Give an execution's slot back from a process that does not hold its
        ExecutionSlot (e.g. another replica that saw it end). A holder that still renews it
        does not put it back."""
        await self._slots.release_for(tenant_id, api_key_id, execution_id)

    async def check_tokens(self, tenant_id: Id) -> None:
        """Raises ResourceExhaustedError `quota_exceeded.tokens_per_day` (retry_after: seconds
        until midnight UTC) once the tenant has used `AGENTFLOW_TENANT_TOKENS_PER_DAY` tokens
        today (UTC). Call it before a run starts (and, if wanted, before each model call)."""
        await self._counted(self._tokens.check(tenant_id))

    async def add_tokens(self, tenant_id: Id, tokens: int) -> int | None:
        """Count tokens the tenant used (a call's or a run's `usage.total_tokens`); the day's
        total, or None when not counted (no quota, nothing to add, or Redis unavailable)."""
        return await self._tokens.add(tenant_id, tokens)

    async def tokens_used(self, tenant_id: Id) -> int | None:
        """Tokens the tenant used today (UTC), or None when Redis cannot say."""
        return await self._tokens.used(tenant_id)

    async def _counted(self, decision: Awaitable[T]) -> T:
        """`decision`'s result; a refusal is counted under its scope, then raised."""
        try:
            return await decision
        except ResourceExhaustedError as exc:
            self._metrics.limit_refused(SCOPES[exc.code])
            raise

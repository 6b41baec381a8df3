"""`Limiter`: every limit of the server, over one Redis client (`App.limiter`).

- `admit_request(tenant_id, api_key_id)`: requests per second with a burst, per tenant and per
  key (the API's interceptor calls it for every authenticated call).
- `acquire_execution_slot(…)` / `execution_slot(…)`: concurrent executions per tenant and key.
- `check_tokens(tenant_id)` / `add_tokens(tenant_id, n)`: tokens per day per tenant.
- `providers`: the ProviderLimiter given to source adapters (sources' own `config.limits`).

Each tenant's limits are the server's (`policy`, from the settings) where the tenant has not set
its own (`Tenant.limits`, read through the `tenant_limits` lookup the limiter is given and kept
for `limits_cache_seconds`; dropped at once when an `Invalidation` of the tenant arrives, from
this server or another). A lookup that fails leaves the server's limits in force.

Refusals are ResourceExhaustedError (RESOURCE_EXHAUSTED, with RetryInfo carrying
`retry_after`) whose `code` names the limit; each is counted in the metrics
(`agentflow_rate_limit_refusals_total{scope}`, the scope by the code, `SCOPES`), and so is a
provider call a source's limits hold back (scope `source_calls`). Every decision is one Lua
script in Redis, so it holds across replicas. When Redis is down or slow, every limit fails
open (allows; a warning at most once a minute) — never an error, never a wait of more than
`timeout` seconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import redis.asyncio as redis
from cachetools import TTLCache

from agentflow_grpc.keyspace import Id, RedisKeys
from agentflow_grpc.limits.guard import FailOpen
from agentflow_grpc.limits.invalidations import Invalidation, Invalidations
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
from agentflow_grpc.model.records import TenantLimits
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.observability.metrics import Metrics

log = get_logger("agentflow.limits")

T = TypeVar("T")

# A tenant's own limits, by its id (TenantService.tenant_limits): its stored `Tenant.limits`.
TenantLimitsLookup = Callable[[uuid.UUID], Awaitable[TenantLimits]]

_TENANTS_CACHED = 10_000

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
        tenant_limits: TenantLimitsLookup | None = None,
        invalidations: Invalidations | None = None,
        limits_cache_seconds: float = 5.0,
    ) -> None:
        """No I/O: the scripts are loaded on first use. `keys` names every key (under
        `AGENTFLOW_REDIS_PREFIX`); refusals are counted in `metrics`; `timeout` bounds each
        Redis call; after a failure Redis is left alone for `pause` seconds (limits allow
        meanwhile). `policy` holds the server's limits; `tenant_limits` (None: none) looks up
        a tenant's own, kept `limits_cache_seconds` or until `invalidations` says they
        changed."""
        scripts = Scripts.register(client)
        self.policy = policy
        self._metrics = metrics
        self.guard = FailOpen(timeout=timeout, pause=pause, warn_every=warn_every)
        self._requests = RequestLimits(scripts, self.guard, keys)
        self._slots = ExecutionSlots(scripts, self.guard, keys)
        self._tokens = TokenQuota(scripts, self.guard, keys)
        self.providers = RedisProviderLimiter(scripts, self.guard, keys, metrics)
        self._tenant_limits = tenant_limits
        self._invalidations = invalidations
        self._warn_every = warn_every
        self._next_warning = 0.0
        # Each tenant's policy (the server's, with its own limits in place), by tenant id.
        self._policies: TTLCache[str, LimitPolicy] = TTLCache(
            _TENANTS_CACHED, limits_cache_seconds, timer=time.monotonic
        )
        if invalidations is not None:
            invalidations.on_invalidation(self._forget)

    async def policy_for(self, tenant_id: Id) -> LimitPolicy:
        """The limits in force for the tenant: its own where it set them, the server's
        elsewhere (the server's alone without a lookup, or when it fails)."""
        if self._tenant_limits is None:
            return self.policy
        cached = self._policies.get(str(tenant_id))
        if cached is not None:
            return cached
        generation = 0 if self._invalidations is None else self._invalidations.generation
        try:
            limits = await self._tenant_limits(
                tenant_id if isinstance(tenant_id, uuid.UUID) else uuid.UUID(tenant_id)
            )
        except Exception as exc:  # whatever the lookup met: limits fail open, to the defaults
            self._lookup_failed(tenant_id, exc)
            return self.policy
        policy = self.policy.for_tenant(limits)
        if self._invalidations is None or self._invalidations.generation == generation:
            self._policies[str(tenant_id)] = policy
        return policy

    async def admit_request(self, tenant_id: Id, api_key_id: Id | None) -> None:
        """Count one API call. Raises ResourceExhaustedError `rate_limited.tenant` or
        `rate_limited.api_key` (retry_after: seconds until it would be admitted) when the
        tenant's or the key's rate is used up; a refused call counts against neither."""
        policy = await self.policy_for(tenant_id)
        await self._counted(self._requests.admit(tenant_id, api_key_id, policy))

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
        policy = await self.policy_for(tenant_id)
        return await self._counted(self._slots.acquire(tenant_id, api_key_id, execution_id, policy))

    @asynccontextmanager
    async def execution_slot(
        self, tenant_id: Id, api_key_id: Id | None, execution_id: Id
    ) -> AsyncIterator[ExecutionSlot]:
        """`async with limiter.execution_slot(t, k, e):` runs the body holding the slot (see
        `acquire_execution_slot`), released on the way out, however it is left."""
        slot = await self.acquire_execution_slot(tenant_id, api_key_id, execution_id)
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
        today (UTC), or the tenant's own `tokens_per_day`. Call it before a run starts (and,
        if wanted, before each model call)."""
        policy = await self.policy_for(tenant_id)
        await self._counted(self._tokens.check(tenant_id, policy.tenant_tokens_per_day))

    async def add_tokens(self, tenant_id: Id, tokens: int) -> int | None:
        """Count tokens the tenant used (a call's or a run's `usage.total_tokens`); the day's
        total, or None when not counted (no quota, nothing to add, or Redis unavailable)."""
        if tokens <= 0:
            return None
        policy = await self.policy_for(tenant_id)
        return await self._tokens.add(tenant_id, tokens, policy.tenant_tokens_per_day)

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

    def _forget(self, invalidation: Invalidation | None) -> None:
        """Drop the tenant's cached policy when its limits changed (everything: None)."""
        if invalidation is None:
            self._policies.clear()
        elif invalidation.api_key_id is None:
            self._policies.pop(str(invalidation.tenant_id), None)

    def _lookup_failed(self, tenant_id: Id, exc: Exception) -> None:
        now = time.monotonic()
        if now >= self._next_warning:
            self._next_warning = now + self._warn_every
            log.warning(
                "limits.tenant_limits_unavailable",
                tenant_id=str(tenant_id),
                error=f"{type(exc).__name__}: {exc}",
                effect="the server's default limits apply until the tenant's can be read",
            )

"""Concurrent executions per tenant and per API key: slots that cannot leak.

Each limit is a sorted set of holders (execution ids) scored by when their lease ends. Taking a
slot drops the holders whose lease has ended, then adds the execution to the tenant's set and
the key's set together, or to neither. While an execution runs, its slot's lease is renewed
every third of the lease; releasing removes it. A server that crashes stops renewing: its slots
free themselves when their leases end (`LimitPolicy.slot_lease`, 60 s).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agentflow_grpc.keyspace import Id, RedisKeys
from agentflow_grpc.limits.guard import FailOpen
from agentflow_grpc.limits.policy import LimitPolicy
from agentflow_grpc.limits.scripts import Scripts
from agentflow_grpc.model.errors import ResourceExhaustedError
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.limits")

TENANT_CONCURRENCY = "concurrency_limited.tenant"
KEY_CONCURRENCY = "concurrency_limited.api_key"


class ExecutionSlot:
    """A held slot (one execution's); `await release()` when the execution has ended.

    Its lease is renewed in the background until then. Releasing twice is harmless; a slot
    that was never taken in Redis (unlimited, or Redis down: limits fail open) releases
    nothing."""

    def __init__(
        self, slots: ExecutionSlots, holder: str, keys_held: list[str], *, lease: float
    ) -> None:
        self._slots = slots
        self.holder = holder
        self._keys = keys_held
        self._lease = lease
        self._renewal: asyncio.Task[None] | None = None
        self.released = False
        if keys_held:
            self._renewal = asyncio.create_task(self._renew(), name=f"slot-renewal-{holder}")

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            held = await self._slots.renew(self.holder, self._keys, self._lease)
            if held is not None and held < len(self._keys):
                # Not put back (it may have been given to another run meanwhile): the run goes
                # on uncounted.
                log.warning(
                    "limits.slot_lost",
                    execution_id=self.holder,
                    hint="the lease ended before it was renewed (a stalled event loop?)",
                )
                return

    async def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self._renewal is not None:
            # Not awaited: a renewal still in flight renews only what is held (ZADD XX), so it
            # cannot put the slot back after the release.
            self._renewal.cancel()
        if self._keys:
            await self._slots.release(self.holder, self._keys)

    async def __aenter__(self) -> ExecutionSlot:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()


@dataclass(frozen=True, slots=True)
class _Limit:
    key: str
    most: int
    code: str
    whom: str


class ExecutionSlots:
    def __init__(self, scripts: Scripts, guard: FailOpen, keys: RedisKeys) -> None:
        self._scripts = scripts
        self._guard = guard
        self._keys = keys

    def _limits(self, tenant_id: Id, api_key_id: Id | None, policy: LimitPolicy) -> list[_Limit]:
        limits = []
        if policy.tenant_max_concurrent_executions > 0:
            limits.append(
                _Limit(
                    self._keys.tenant_executions(tenant_id),
                    policy.tenant_max_concurrent_executions,
                    TENANT_CONCURRENCY,
                    "the tenant",
                )
            )
        if policy.key_max_concurrent_executions > 0 and api_key_id is not None:
            limits.append(
                _Limit(
                    self._keys.key_executions(tenant_id, api_key_id),
                    policy.key_max_concurrent_executions,
                    KEY_CONCURRENCY,
                    "this API key",
                )
            )
        return limits

    async def acquire(
        self, tenant_id: Id, api_key_id: Id | None, execution_id: Id, policy: LimitPolicy
    ) -> ExecutionSlot:
        """A slot in the tenant's and the key's sets under the tenant's `policy`, or
        ResourceExhaustedError naming the full one (`concurrency_limited.tenant`,
        `concurrency_limited.api_key`)."""
        limits = self._limits(tenant_id, api_key_id, policy)
        holder = str(execution_id)
        lease = policy.slot_lease
        if not limits:
            return ExecutionSlot(self, holder, [], lease=lease)
        slot_keys = [limit.key for limit in limits]
        arguments: list[str | int] = [holder, round(lease * 1000)]
        arguments += [limit.most for limit in limits]
        reply = await self._guard.call(
            "acquire_slot", lambda: self._scripts.acquire_slot(keys=slot_keys, args=arguments)
        )
        if reply is None:  # Redis unavailable: allowed, and nothing to renew or release
            return ExecutionSlot(self, holder, [], lease=lease)
        allowed, wait_ms, index = (int(part) for part in reply)
        if allowed == 1:
            return ExecutionSlot(self, holder, slot_keys, lease=lease)
        full = limits[index - 1]
        runs = f"{full.most} execution{'s' if full.most != 1 else ''}"
        raise ResourceExhaustedError(
            f"{full.whom} already runs {runs} at once, its limit; retry when one has ended",
            retry_after=min(policy.slot_retry_after, wait_ms / 1000),
            code=full.code,
        )

    async def renew(self, holder: str, slot_keys: list[str], lease: float) -> int | None:
        """How many of `slot_keys` still hold `holder` (leases moved on); None: Redis failed."""
        reply = await self._guard.call(
            "renew_slot",
            lambda: self._scripts.renew_slot(keys=slot_keys, args=[holder, round(lease * 1000)]),
        )
        return None if reply is None else int(reply)

    async def release(self, holder: str, slot_keys: list[str]) -> None:
        async def remove() -> None:
            async with self._scripts.client.pipeline(transaction=True) as pipeline:
                for key in slot_keys:
                    pipeline.zrem(key, holder)
                await pipeline.execute()

        await self._guard.call("release_slot", remove)

    async def release_for(self, tenant_id: Id, api_key_id: Id | None, execution_id: Id) -> None:
        """Give back an execution's slot from anywhere (another replica, a clean-up): from the
        tenant's set and the key's, whatever the limits are now (the tenant's may have changed
        since the slot was taken; a set that does not hold it is left as it is)."""
        slot_keys = [self._keys.tenant_executions(tenant_id)]
        if api_key_id is not None:
            slot_keys.append(self._keys.key_executions(tenant_id, api_key_id))
        await self.release(str(execution_id), slot_keys)

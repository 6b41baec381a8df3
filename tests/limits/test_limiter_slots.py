"""Concurrent executions per tenant and per API key, against a real Valkey: exactly K slots held
under concurrent acquisition from two "replicas", given back on exit, renewed while held, and
freed when the process holding them is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable

import pytest
from support.api_helpers import eventually
from support.limits import new_id, replicas

from agentflow_grpc.limits import (
    KEY_CONCURRENCY,
    TENANT_CONCURRENCY,
    ExecutionSlot,
    Limiter,
    LimitPolicy,
)
from agentflow_grpc.model.errors import ResourceExhaustedError

# A replica that takes two slots, says so, and holds them (renewing their leases) until killed.
HOLDER = """
import asyncio, sys
import redis.asyncio as redis
from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.limits import Limiter, LimitPolicy
from agentflow_grpc.observability.metrics import Metrics

async def main():
    client = redis.Redis.from_url(sys.argv[1])
    policy = LimitPolicy(tenant_max_concurrent_executions=2, slot_lease=float(sys.argv[3]))
    limiter = Limiter(client, policy, keys=RedisKeys("af"), metrics=Metrics())
    slots = [await limiter.acquire_execution_slot(sys.argv[2], None, f"held-{n}") for n in (1, 2)]
    print("held", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def try_slot(call: Awaitable[ExecutionSlot]) -> ExecutionSlot | ResourceExhaustedError:
    try:
        return await call
    except ResourceExhaustedError as exc:
        return exc


async def test_exactly_k_slots_are_held_under_concurrent_acquisition(redis_url: str) -> None:
    policy = LimitPolicy(tenant_max_concurrent_executions=5)
    async with replicas(redis_url, policy, count=2) as (first, second):
        tenant = new_id()
        attempts = [
            (first if n % 2 else second).acquire_execution_slot(tenant, None, new_id())
            for n in range(60)
        ]
        results = await asyncio.gather(*(try_slot(attempt) for attempt in attempts))
        held = [result for result in results if isinstance(result, ExecutionSlot)]
        refused = [result for result in results if isinstance(result, ResourceExhaustedError)]
        try:
            assert len(held) == 5
            assert len(refused) == 55
            assert {error.code for error in refused} == {TENANT_CONCURRENCY}
            # Nobody has ended: the wait is a hint (at most 1 s), not the lease's 60 s.
            assert all(0 < error.retry_after <= 1.0 for error in refused)
        finally:
            for slot in held:
                await slot.release()
        # All given back: five new executions fit again, and a sixth does not.
        again = [await first.acquire_execution_slot(tenant, None, new_id()) for _ in range(5)]
        with pytest.raises(ResourceExhaustedError):
            await second.acquire_execution_slot(tenant, None, new_id())
        for slot in again:
            await slot.release()


async def test_a_slot_is_given_back_when_the_block_is_left_however_it_is_left(
    redis_url: str,
) -> None:
    policy = LimitPolicy(tenant_max_concurrent_executions=1)
    async with replicas(redis_url, policy, count=1) as (limiter,):
        tenant = new_id()
        async with limiter.execution_slot(tenant, None, new_id()) as slot:
            assert not slot.released
            with pytest.raises(ResourceExhaustedError):
                await limiter.acquire_execution_slot(tenant, None, new_id())
        assert slot.released
        with pytest.raises(RuntimeError, match="the run failed"):
            async with limiter.execution_slot(tenant, None, new_id()):
                raise RuntimeError("the run failed")

        running = asyncio.Event()

        async def cancelled_run() -> None:
            async with limiter.execution_slot(tenant, None, new_id()):
                running.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(cancelled_run())
        await asyncio.wait_for(running.wait(), timeout=5)
        assert await _is_full(limiter, tenant)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await (await limiter.acquire_execution_slot(tenant, None, new_id())).release()


async def _is_full(limiter: Limiter, tenant: uuid.UUID) -> bool:
    """Whether the tenant's slots are all taken (asked by taking one, given back at once)."""
    result = await try_slot(limiter.acquire_execution_slot(tenant, None, new_id()))
    if isinstance(result, ExecutionSlot):
        await result.release()
        return False
    return True


async def test_the_same_execution_takes_one_slot_however_often_it_asks(redis_url: str) -> None:
    policy = LimitPolicy(tenant_max_concurrent_executions=2)
    async with replicas(redis_url, policy, count=1) as (limiter,):
        tenant, execution = new_id(), new_id()
        first = await limiter.acquire_execution_slot(tenant, None, execution)
        again = await limiter.acquire_execution_slot(tenant, None, execution)
        other = await limiter.acquire_execution_slot(tenant, None, new_id())
        with pytest.raises(ResourceExhaustedError):
            await limiter.acquire_execution_slot(tenant, None, new_id())
        for slot in (first, again, other):
            await slot.release()


async def test_a_key_has_its_own_limit_within_its_tenants(redis_url: str) -> None:
    policy = LimitPolicy(tenant_max_concurrent_executions=3, key_max_concurrent_executions=1)
    async with replicas(redis_url, policy, count=1) as (limiter,):
        tenant, key, other_key = new_id(), new_id(), new_id()
        held = [await limiter.acquire_execution_slot(tenant, key, new_id())]
        with pytest.raises(ResourceExhaustedError) as refused:
            await limiter.acquire_execution_slot(tenant, key, new_id())
        assert refused.value.code == KEY_CONCURRENCY
        held.append(await limiter.acquire_execution_slot(tenant, other_key, new_id()))
        # The key refused above took no tenant slot: one is left, for a third key.
        held.append(await limiter.acquire_execution_slot(tenant, new_id(), new_id()))
        with pytest.raises(ResourceExhaustedError) as refused:
            await limiter.acquire_execution_slot(tenant, new_id(), new_id())
        assert refused.value.code == TENANT_CONCURRENCY
        for slot in held:
            await slot.release()
        await limiter.release_execution_slot(tenant, key, new_id())  # not held: harmless


async def test_a_slot_released_from_elsewhere_is_free_for_others(redis_url: str) -> None:
    policy = LimitPolicy(tenant_max_concurrent_executions=1)
    async with replicas(redis_url, policy, count=2) as (runner, other):
        tenant, execution = new_id(), new_id()
        slot = await runner.acquire_execution_slot(tenant, None, execution)
        with pytest.raises(ResourceExhaustedError):
            await other.acquire_execution_slot(tenant, None, new_id())
        await other.release_execution_slot(tenant, None, execution)
        await (await other.acquire_execution_slot(tenant, None, new_id())).release()
        await slot.release()


@pytest.mark.slow
async def test_held_slots_outlive_their_lease_and_free_themselves_when_the_holder_dies(
    redis_url: str,
) -> None:
    lease = 1.0
    policy = LimitPolicy(tenant_max_concurrent_executions=2, slot_lease=lease)
    tenant = str(new_id())
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        redis_url,
        tenant,
        str(lease),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), timeout=30)
        assert line.strip() == b"held"
        async with replicas(redis_url, policy, count=1) as (limiter,):
            # Renewed by the live holder: still full well past one lease.
            until = time.monotonic() + 2.5 * lease
            while time.monotonic() < until:
                assert await _is_full(limiter, uuid.UUID(tenant))
                await asyncio.sleep(0.1)
            holder.send_signal(signal.SIGKILL)
            await holder.wait()
            killed = time.monotonic()

            async def free() -> bool:
                return not await _is_full(limiter, uuid.UUID(tenant))

            await eventually(free, timeout=lease + 5, interval=0.05)
            assert time.monotonic() - killed <= lease + 1.0
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()

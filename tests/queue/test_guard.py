"""The queue's guard: every Redis failure of the job queue, the leases and the fan-out comes out
as QueueUnavailableError (an UnavailableError: UNAVAILABLE), with no pause before Redis is asked
again; our own bugs are not swallowed. Redis down is a closed port."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from support.network import closed_port

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.model.errors import QueueUnavailableError, UnavailableError
from agentflow_grpc.queue.coordination import Coordination
from agentflow_grpc.queue.guard import RedisGuard, or_none
from agentflow_grpc.queue.jobs import Delivery, Job


@pytest.fixture
async def down() -> AsyncIterator[Coordination]:
    client = redis.Redis.from_url(
        f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=1, socket_timeout=1
    )
    try:
        yield Coordination.on(
            client, RedisKeys("test"), replica="r", visibility_timeout=30, max_deliveries=3
        )
    finally:
        await client.aclose()


def test_redis_failures_become_queue_unavailable_and_bugs_pass_through() -> None:
    guard = RedisGuard("the job queue")
    with pytest.raises(QueueUnavailableError) as refused, guard:
        raise RedisConnectionError("Connection refused")
    assert isinstance(refused.value, UnavailableError)
    assert refused.value.message == "the job queue (Redis) is unavailable: Connection refused"
    assert isinstance(refused.value.__cause__, RedisConnectionError)
    with pytest.raises(QueueUnavailableError), guard:
        raise TimeoutError  # an OSError: a socket that timed out
    with pytest.raises(KeyError), guard:
        raise KeyError("ours")


async def test_with_redis_down_every_queue_call_is_unavailable(down: Coordination) -> None:
    execution = uuid.uuid4()
    delivery = Delivery("1-0", Job(execution, uuid.uuid4()), count=1)
    calls = [
        down.queue.ready(),
        down.queue.enqueue(Job(execution, uuid.uuid4())),
        down.queue.claim(block=0.1),
        down.queue.touch(delivery),
        down.queue.hand_back(delivery),
        down.queue.ack(delivery),
        down.leases.acquire(execution),
        down.leases.renew(execution),
        down.leases.release(execution),
        down.leases.holder(execution),
        down.leases.request_cancel(execution, "why"),
        down.leases.requests(execution),
        down.leases.request_watch(execution),
    ]
    for call in calls:
        with pytest.raises(QueueUnavailableError):
            await call

    async def still_running() -> bool:
        return True

    with pytest.raises(QueueUnavailableError):
        async for _ in down.fanout.follow(execution, after_sequence=0, still_running=still_running):
            pass


async def test_or_none_passes_over_a_failed_call(down: Coordination) -> None:
    assert await or_none(down.leases.acquire(uuid.uuid4())) is None

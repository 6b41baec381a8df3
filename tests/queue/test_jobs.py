"""The job entries on a real Valkey: the W3C trace context of the call that queued a job travels
with it, and a job queued without one (by a replica of an older version) is a job all the same;
an older replica reading a new entry finds the fields it knows where they were."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as redis

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.queue.jobs import Job, JobQueue

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def keys() -> RedisKeys:
    return RedisKeys(f"test-{uuid.uuid4().hex[:12]}")


def queue_on(valkey: redis.Redis, keys: RedisKeys) -> JobQueue:
    return JobQueue(valkey, keys, consumer="worker-1", visibility_timeout=30)


async def test_a_job_carries_the_trace_context_it_was_queued_with(
    valkey: redis.Redis, keys: RedisKeys
) -> None:
    queue = queue_on(valkey, keys)
    execution, tenant = uuid.uuid4(), uuid.uuid4()
    context = (("traceparent", TRACEPARENT), ("tracestate", "vendor=1"), ("baggage", "no=1"))
    await queue.enqueue(Job(execution, tenant, context))

    delivery = await queue.claim(block=1)
    assert delivery is not None
    assert delivery.job == Job(execution, tenant, context[:2])  # W3C trace context only
    (_, fields), *_ = await valkey.xrange(keys.jobs)
    assert fields == {
        b"execution_id": str(execution).encode(),
        b"tenant_id": str(tenant).encode(),
        b"traceparent": TRACEPARENT.encode(),
        b"tracestate": b"vendor=1",
    }


async def test_a_job_queued_without_a_trace_context_is_run_all_the_same(
    valkey: redis.Redis, keys: RedisKeys
) -> None:
    queue = queue_on(valkey, keys)
    await queue.ready()
    execution, tenant = uuid.uuid4(), uuid.uuid4()
    await queue.claim(block=0.01)  # makes the group, as a replica's workers do
    # The entry as a replica of the version before traces wrote it.
    await valkey.xadd(keys.jobs, {"execution_id": str(execution), "tenant_id": str(tenant)})

    delivery = await queue.claim(block=1)

    assert delivery is not None
    assert (delivery.job.execution_id, delivery.job.tenant_id) == (execution, tenant)
    assert delivery.job.trace_context == ()


# --- a streamed run's job: attached to its server from the start ---


async def test_an_attached_job_is_claimed_by_its_server_and_never_handed_out_as_new(
    valkey: redis.Redis, keys: RedisKeys
) -> None:
    server = queue_on(valkey, keys)
    other = JobQueue(valkey, keys, consumer="worker-2", visibility_timeout=30)
    execution, tenant = uuid.uuid4(), uuid.uuid4()

    delivery = await server.attach(Job(execution, tenant, (("traceparent", TRACEPARENT),)))

    assert delivery.attached
    assert delivery.count == 1
    assert await other.claim(block=0.2) is None  # not a new job for anybody's worker
    pending = await valkey.xpending_range(keys.attached_jobs, "agentflow-workers", "-", "+", 10)
    assert [(p["consumer"], p["times_delivered"]) for p in pending] == [(b"worker-1", 1)]
    await server.ack(delivery)
    assert await valkey.xlen(keys.attached_jobs) == 0


async def test_an_attached_job_whose_server_went_quiet_is_taken_up_by_another_worker(
    valkey: redis.Redis, keys: RedisKeys
) -> None:
    server = JobQueue(valkey, keys, consumer="worker-1", visibility_timeout=0.3)
    other = JobQueue(valkey, keys, consumer="worker-2", visibility_timeout=0.3)
    job = Job(uuid.uuid4(), uuid.uuid4(), (("traceparent", TRACEPARENT),))
    attached = await server.attach(job)
    await server.touch(attached)  # alive: nobody takes it
    assert await other.claim(block=0.05) is None

    taken = None
    for _ in range(20):  # quiet for the visibility timeout: reclaimed
        taken = await other.claim(block=0.05)
        if taken is not None:
            break
    assert taken is not None
    assert taken.attached
    assert taken.job == job
    assert taken.count == 2
    await other.ack(taken)
    assert await valkey.xlen(keys.attached_jobs) == 0
    assert await valkey.xlen(keys.jobs) == 0


async def test_a_handed_back_attached_job_is_taken_up_at_once(
    valkey: redis.Redis, keys: RedisKeys
) -> None:
    server = queue_on(valkey, keys)
    other = JobQueue(valkey, keys, consumer="worker-2", visibility_timeout=30)
    attached = await server.attach(Job(uuid.uuid4(), uuid.uuid4()))
    await server.hand_back(attached)  # the server shuts down

    taken = await other.claim(block=0.05)
    assert taken is not None
    assert taken.entry_id == attached.entry_id
    assert taken.attached


async def test_a_claim_reclaims_one_abandoned_job_of_either_stream_and_counts_only_that_one(
    valkey: redis.Redis, keys: RedisKeys
) -> None:
    dead = JobQueue(valkey, keys, consumer="worker-1", visibility_timeout=0.2)
    other = JobQueue(valkey, keys, consumer="worker-2", visibility_timeout=0.2)
    queued, streamed = Job(uuid.uuid4(), uuid.uuid4()), Job(uuid.uuid4(), uuid.uuid4())
    await dead.enqueue(queued)
    assert await dead.claim(block=0.05) is not None  # claimed, then its worker dies
    await dead.attach(streamed)  # a streamed run's server dies too
    await asyncio.sleep(0.3)

    first = await other.claim(block=0.05)
    second = await other.claim(block=0.05)

    assert first is not None
    assert second is not None
    assert {first.job, second.job} == {queued, streamed}
    # Each was handed out once before: the reclaim is its second delivery, not its third.
    assert (first.count, second.count) == (2, 2)

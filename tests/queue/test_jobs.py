"""The job entries on a real Valkey: the W3C trace context of the call that queued a job travels
with it, and a job queued without one (by a replica of an older version) is a job all the same;
an older replica reading a new entry finds the fields it knows where they were."""

from __future__ import annotations

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

"""The event fan-out on a real Valkey: a run's events reach Redis only once a follower on
another replica asked for them, and a follower that comes after publishing began is sent back
to the log for what it lacks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as redis

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.queue.coordination import Coordination
from agentflow_grpc.queue.fanout import EventFanout, StreamGap
from agentflow_grpc.queue.jobs import Delivery, Job
from agentflow_grpc.queue.runs import WATCH_REQUEST_TTL, RunLeases
from agentflow_grpc.services.heartbeats import Heartbeats


def _events(execution_id: uuid.UUID, first: int, last: int) -> list[ExecutionEvent]:
    events = []
    for sequence in range(first, last + 1):
        kind = EventType.NODE_TOKEN
        if sequence == 1:
            kind = EventType.EXECUTION_STARTED
        elif sequence == 6:
            kind = EventType.EXECUTION_COMPLETED
        events.append(
            ExecutionEvent(
                execution_id=str(execution_id),
                sequence=sequence,
                timestamp=datetime.now(UTC),
                type=kind,
                node_id=None if kind is not EventType.NODE_TOKEN else "write",
                attempt=None if kind is not EventType.NODE_TOKEN else 1,
                data={"text": f"t{sequence}"} if kind is EventType.NODE_TOKEN else {},
            )
        )
    return events


@pytest.fixture
def keys() -> RedisKeys:
    return RedisKeys(f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    try:
        yield connection
    finally:
        await connection.aclose()


async def test_an_unwatched_run_publishes_nothing(client: redis.Redis, keys: RedisKeys) -> None:
    execution_id = uuid.uuid4()
    publisher = EventFanout(client, keys).publisher(execution_id)
    publisher.publish_all(_events(execution_id, 1, 6))
    await publisher.close()
    assert not publisher.watched
    assert publisher.round_trips == 0
    assert await client.exists(keys.run_events(execution_id)) == 0


async def test_a_watched_run_publishes_what_is_stored_from_then_on(
    client: redis.Redis, keys: RedisKeys
) -> None:
    execution_id = uuid.uuid4()
    fanout = EventFanout(client, keys)
    publisher = fanout.publisher(execution_id)
    publisher.publish_all(_events(execution_id, 1, 2))  # before anybody asked: the log has them
    publisher.watch()
    publisher.publish_all(_events(execution_id, 3, 4))
    publisher.publish_all(_events(execution_id, 5, 6))
    await publisher.close()
    assert await client.xlen(keys.run_events(execution_id)) == 4

    async def running() -> bool:
        return True

    # A follower whose log ends before what was published: a gap, back to the log.
    with pytest.raises(StreamGap):
        async for _ in fanout.follow(execution_id, after_sequence=1, still_running=running):
            pass
    # One that read the log up to 3: 4, 5 and the terminal 6, none twice.
    followed = [
        event.sequence
        async for event in fanout.follow(execution_id, after_sequence=3, still_running=running)
    ]
    assert followed == [4, 5, 6]


async def test_watch_and_cancel_requests_are_read_in_one_round_trip(
    client: redis.Redis, keys: RedisKeys
) -> None:
    leases = RunLeases(client, keys, replica="r", ttl=5)
    execution_id = uuid.uuid4()
    requests = await leases.requests(execution_id)
    assert (requests.cancel, requests.watched) == (None, False)

    await leases.request_watch(execution_id)
    requests = await leases.requests(execution_id)
    assert (requests.cancel, requests.watched) == (None, True)
    ttl = await client.ttl(keys.run_watched(execution_id))
    assert 0 < ttl <= WATCH_REQUEST_TTL  # it lapses unless its follower renews it

    await leases.request_cancel(execution_id, "enough")
    requests = await leases.requests(execution_id)
    assert (requests.cancel, requests.watched) == ("enough", True)


class _LiveRun:
    """What a heartbeat keeps of a run (services/recorded_run.RecordedRun's part)."""

    def __init__(self) -> None:
        self.id = uuid.uuid4()
        self.finished = False
        self.ended = False  # its terminal event stored: the heartbeat acknowledges its job
        self.watched = asyncio.Event()
        self.cancelled: str | None = None
        self._end = asyncio.Event()

    async def wait(self) -> None:
        await self._end.wait()

    def watch(self) -> None:
        self.watched.set()

    def cancel(self, reason: str) -> None:
        self.cancelled = reason

    def end(self) -> None:
        self.finished = True
        self._end.set()


async def test_a_queued_run_asked_for_before_it_was_taken_up_is_published_at_once(
    client: redis.Redis, keys: RedisKeys
) -> None:
    # The follower's pub/sub message found no runner (the job was still queued); the replica
    # that takes the run up reads the kept request as it starts keeping the run, rather than
    # at its first heartbeat (seconds later).
    coordination = Coordination.on(
        client, keys, replica="r", visibility_timeout=30, max_deliveries=3
    )
    run = _LiveRun()
    await coordination.leases.request_watch(run.id)
    delivery = Delivery("1-0", Job(run.id, uuid.uuid4()), count=1)
    keeper = Heartbeats(coordination).keep(run, delivery)  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(run.watched.wait(), timeout=2)  # the heartbeat is 10 s
        assert run.cancelled is None
    finally:
        run.end()
        await keeper

"""What replicas share through Redis, in one bundle: the job queue, run leases and cancel
requests, and the fan-out of events to followers on other replicas; with the timing of a
runner's heartbeat and how often a job may be handed out."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.queue.fanout import EventFanout
from agentflow_grpc.queue.jobs import JobQueue
from agentflow_grpc.queue.runs import RunLeases


@dataclass(frozen=True, slots=True)
class Coordination:
    queue: JobQueue
    leases: RunLeases
    fanout: EventFanout
    heartbeat: float  # seconds between a runner's lease renewals, job touches, cancel checks
    max_deliveries: int  # a job handed out more often than this is failed, not run again

    @classmethod
    def on(
        cls,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        replica: str,
        visibility_timeout: float,
        max_deliveries: int,
    ) -> Coordination:
        """The parts of the replica `replica` on `client`: a runner that goes quiet for
        `visibility_timeout` seconds loses its leases and jobs; its heartbeat beats three
        times in that time."""
        return cls(
            queue=JobQueue(client, keys, consumer=replica, visibility_timeout=visibility_timeout),
            leases=RunLeases(client, keys, replica=replica, ttl=visibility_timeout),
            fanout=EventFanout(client, keys),
            heartbeat=visibility_timeout / 3,
            max_deliveries=max_deliveries,
        )

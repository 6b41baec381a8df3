"""The job queue: background executions on a Redis stream, read by one consumer group.

`enqueue()` adds an entry (execution and tenant ids, and the W3C trace context of the call that
queued it: `traceparent` and `tracestate`, which the run continues; an entry without them, from
a replica that did not send them, is a job all the same). Workers `claim()` one at a time: first an
entry that has been pending longer than the visibility timeout — its worker died or hung, and
XAUTOCLAIM hands it over — else a new one (XREADGROUP). A worker `touch()`es what it holds while
it runs (XCLAIM … JUSTID resets the idle time, so a live worker's job is never reclaimed) and
`ack()`s it (XACK, then XDEL) only after the run's final event is stored. An entry is delivered
again only when its worker went quiet for the whole visibility timeout; `Delivery.count` says how
often it has been handed out. Redis failing a call raises QueueUnavailableError (queue/guard.py).

A run streamed to its caller (`ExecuteWorkflow`) is owned by the queue too, so that no run is
left orphaned when its server dies: `attach()` adds its job to a second stream,
`{p}:jobs:attached`, and claims it for this server in the same step (XADD, then XCLAIM … FORCE,
in one script). Nobody reads that stream for new entries: workers only reclaim from it (with
the main stream's, in one script: one entry at most) an entry whose server went quiet — and
resume its run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ResponseError

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.model.errors import QueueUnavailableError
from agentflow_grpc.queue.guard import RedisGuard

GROUP = "agentflow-workers"


# The entry's fields that carry the trace context (W3C names), beside the ids.
TRACE_FIELDS = ("traceparent", "tracestate")


@dataclass(frozen=True, slots=True)
class Job:
    execution_id: uuid.UUID
    tenant_id: uuid.UUID
    # The W3C trace context (`traceparent`, `tracestate`) of the call that queued it; empty
    # when it had none, or the job comes from a replica that does not send it.
    trace_context: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Delivery:
    entry_id: str
    job: Job
    count: int  # 1 the first time it is handed out; more after reclaims
    attached: bool = False  # a streamed run's job (`{p}:jobs:attached`)


# The first abandoned job of the two streams, reclaimed for this consumer (one at most: an entry
# reclaimed and not run would count a delivery for nothing and idle out again).
_RECLAIM = """
for i, stream in ipairs(KEYS) do
  local claimed = redis.call('XAUTOCLAIM', stream, ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', 1)
  local entry = claimed[2][1]
  if entry then
    return {i, entry[1], entry[2]}
  end
end
return false
"""

# Add a streamed run's job and claim it for its server at once: pending from the start, never
# handed out as new (FORCE puts an entry nobody read into the consumer's pending list).
_ATTACH = """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'FORCE', 'JUSTID')
return id
"""


class JobQueue:
    def __init__(
        self, client: redis.Redis, keys: RedisKeys, *, consumer: str, visibility_timeout: float
    ) -> None:
        self._redis = client
        self._keys = keys
        self._guard = RedisGuard("the job queue")
        self.consumer = consumer
        self._idle_ms = max(1, round(visibility_timeout * 1000))
        self._group_ready = False
        self._attach = client.register_script(_ATTACH)
        self._reclaim = client.register_script(_RECLAIM)

    async def ready(self) -> None:
        """QueueUnavailableError unless Redis answers (checked before a start is recorded)."""
        with self._guard:
            await self._redis.ping()  # type: ignore[misc]

    async def enqueue(self, job: Job) -> str:
        """Add a job; QueueUnavailableError when Redis cannot take it."""
        with self._guard:
            await self._ensure_group()
            fields: dict[Any, Any] = _fields(job)
            entry = await self._redis.xadd(self._keys.jobs, fields)
        return _text(entry)

    async def attach(self, job: Job) -> Delivery:
        """Add the job of a run this server streams, claimed by this server: nobody else
        takes it up unless this server goes quiet for the visibility timeout."""
        with self._guard:
            await self._ensure_group()
            flat: list[str] = []
            for name, value in _fields(job).items():
                flat += (name, value)
            entry = await self._attach(
                keys=[self._keys.attached_jobs], args=[GROUP, self.consumer, *flat]
            )
        return Delivery(_text(entry), job, 1, attached=True)

    async def claim(self, block: float) -> Delivery | None:
        """A job to run: one abandoned longer than the visibility timeout, else a new one
        (waiting up to `block` seconds); None when there is none."""
        with self._guard:
            try:
                return await self._claim(block)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis lost the stream (restarted without its data)
                    self._group_ready = False
                raise

    async def _claim(self, block: float) -> Delivery | None:
        await self._ensure_group()
        streams = (self._keys.jobs, self._keys.attached_jobs)
        found = await self._reclaim(keys=streams, args=[GROUP, self.consumer, self._idle_ms])
        if found:
            index, entry_id, flat = found
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            return await self._delivery(streams[int(index) - 1], entry_id, fields, reclaimed=True)
        read = await self._redis.xreadgroup(
            GROUP, self.consumer, {self._keys.jobs: ">"}, count=1, block=max(1, round(block * 1000))
        )
        for _stream, stream_entries in read or []:
            for entry_id, fields in stream_entries:
                return await self._delivery(self._keys.jobs, entry_id, fields, reclaimed=False)
        return None

    async def touch(self, delivery: Delivery) -> None:
        """Reset the job's idle time: this worker is alive and still running it."""
        with self._guard:
            await self._redis.xclaim(
                self._stream(delivery), GROUP, self.consumer, 0, [delivery.entry_id], justid=True
            )

    async def hand_back(self, delivery: Delivery) -> None:
        """Give the job up now (this replica is stopping): it is at once as idle as an
        abandoned one, so another worker reclaims it on its next look."""
        with self._guard:
            await self._redis.xclaim(
                self._stream(delivery),
                GROUP,
                self.consumer,
                0,
                [delivery.entry_id],
                idle=self._idle_ms,
                justid=True,
            )

    async def ack(self, delivery: Delivery) -> None:
        """The job is done (its final event stored): it leaves the queue for good."""
        with self._guard:
            stream = self._stream(delivery)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(stream, GROUP, delivery.entry_id)
                pipe.xdel(stream, delivery.entry_id)
                await pipe.execute()

    async def depth(self) -> tuple[int, int]:
        """Jobs waiting for a worker, and jobs claimed and not yet acknowledged (the metrics
        read it at each scrape). Acknowledged jobs leave the stream, so what is in it and not
        pending is waiting."""
        with self._guard:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xlen(self._keys.jobs)
                pipe.xinfo_groups(self._keys.jobs)
                length, groups = await pipe.execute(raise_on_error=False)
        if isinstance(length, int) and length == 0:
            return 0, 0  # no stream yet (XINFO GROUPS fails on a missing key)
        for reply in (length, groups):
            if isinstance(reply, Exception):
                raise QueueUnavailableError(f"the job queue could not be read: {reply}")
        claimed = next((int(g["pending"]) for g in groups if _text(g["name"]) == GROUP), 0)
        return max(0, int(length) - claimed), claimed

    def _stream(self, delivery: Delivery) -> str:
        return self._keys.attached_jobs if delivery.attached else self._keys.jobs

    async def _delivery(
        self, stream: str, entry_id: Any, fields: Any, *, reclaimed: bool
    ) -> Delivery:
        values = {_text(key): _text(value) for key, value in fields.items()}
        job = Job(
            uuid.UUID(values["execution_id"]),
            uuid.UUID(values["tenant_id"]),
            tuple((name, values[name]) for name in TRACE_FIELDS if values.get(name)),
        )
        count = 1
        if reclaimed:
            details = await self._redis.xpending_range(
                stream, GROUP, min=entry_id, max=entry_id, count=1
            )
            count = int(details[0]["times_delivered"]) if details else 2
        attached = stream == self._keys.attached_jobs
        return Delivery(_text(entry_id), job, count, attached=attached)

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        for stream in (self._keys.jobs, self._keys.attached_jobs):
            try:
                await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._group_ready = True


def _fields(job: Job) -> dict[str, str]:
    """A job's entry: its ids and the trace context it carries."""
    fields = {"execution_id": str(job.execution_id), "tenant_id": str(job.tenant_id)}
    fields.update((k, v) for k, v in job.trace_context if k in TRACE_FIELDS)
    return fields


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

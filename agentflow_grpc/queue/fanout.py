"""A run's events, as they happen, for followers on any replica: one Redis stream per run.

The runner publishes each batch of events once the event log has stored it (never waiting: a
task sends whatever has gathered in one pipelined round trip), so a follower elsewhere never sees
an event the log could lose, and a run resumed by another replica continues exactly what
followers saw. It publishes only once a follower elsewhere asked for the run (`watch()`, on a
watch request: queue/runs.py); most runs are followed only where they run, from memory, and
cost Redis nothing. A follower that starts reading the stream after publishing began finds the
events it lacks in the log (it read the log first; a gap sends it back there).

The stream is trimmed to the newest `MAX_EVENTS` and expires an hour after
the run ends. `follow()` reads a run's stream from its start and yields the events after a
sequence number, until the terminal one; a follower first reads the stored log, then this, and
skips what it has seen, so the switch has no gap and no duplicate. If the stream was trimmed past
what the follower has, `follow()` says so (`StreamGap`) and the follower reads the log again.

Redis being down never stops a run: publishing logs once and drops events (followers elsewhere
fall back to reading the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import redis.asyncio as redis

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.model.errors import QueueUnavailableError
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.queue.guard import RedisGuard

log = get_logger("agentflow.queue")

MAX_EVENTS = 10_000
EXPIRE_AFTER_END = 3600  # seconds


class StreamGap(Exception):
    """The stream no longer holds the events right after the follower's last one."""


def encode(event: ExecutionEvent) -> dict[Any, Any]:
    return {"sequence": str(event.sequence), "event": json.dumps(event.to_dict())}


def decode(fields: dict[bytes, bytes] | dict[str, str]) -> ExecutionEvent:
    values = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
    document = json.loads(values["event"])
    return ExecutionEvent(
        execution_id=document["execution_id"],
        sequence=int(document["sequence"]),
        timestamp=datetime.fromisoformat(document["timestamp"]),
        type=EventType(document["type"]),
        node_id=document.get("node_id"),
        attempt=document.get("attempt"),
        data=document["data"],
    )


class EventFanout:
    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._redis = client
        self._keys = keys
        self._guard = RedisGuard("the event fan-out")

    def publisher(self, execution_id: uuid.UUID) -> EventPublisher:
        return EventPublisher(self._redis, self._keys.run_events(execution_id), self._guard)

    async def follow(
        self,
        execution_id: uuid.UUID,
        *,
        after_sequence: int,
        still_running: Callable[[], Awaitable[bool]],
        block: float = 1.0,
    ) -> AsyncIterator[ExecutionEvent]:
        """Events after `after_sequence` from the run's stream, waiting for new ones, until the
        terminal event; or until a quiet `block` seconds after which `still_running()` says
        nobody runs it any more. Raises StreamGap (the stream lost what comes next) or
        QueueUnavailableError."""
        key = self._keys.run_events(execution_id)
        last = after_sequence
        cursor = "0-0"
        while True:
            with self._guard:
                read = await self._redis.xread({key: cursor}, count=500, block=round(block * 1000))
            for _stream, entries in read or []:
                for entry_id, fields in entries:
                    cursor = entry_id
                    event = decode(fields)
                    if event.sequence <= last:
                        continue
                    if event.sequence != last + 1:
                        raise StreamGap(f"the stream holds {event.sequence}, not {last + 1}")
                    last = event.sequence
                    yield event
                    if event.is_terminal:
                        return
            if not read and not await still_running():
                return


class EventPublisher:
    """Publishes one run's events in order, batching what gathers while a send is on the way."""

    def __init__(self, client: redis.Redis, key: str, guard: RedisGuard) -> None:
        self._redis = client
        self._key = key
        self._guard = guard
        self._pending: list[ExecutionEvent] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._broken = False
        self.round_trips = 0
        self._task: asyncio.Task[None] | None = None  # the sender, from the first watch on

    @property
    def watched(self) -> bool:
        return self._task is not None

    def watch(self) -> None:
        """Somebody on another replica follows the run: publish every batch stored from now on
        (the earlier ones are in the log)."""
        if self._task is None and not self._closed:  # a request after the end: nothing to send
            self._task = asyncio.create_task(self._send_loop(), name=f"fanout-{self._key}")

    def publish_all(self, events: list[ExecutionEvent]) -> None:
        if self._broken or not self.watched:
            return
        self._pending.extend(events)
        self._wake.set()

    async def close(self) -> None:
        """Send what is left, then stop."""
        self._closed = True
        if self._task is None:
            return  # never watched: nothing was sent, nothing is left
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch and not self._broken:
                await self._send(batch)
            if self._closed and not self._pending:
                return

    async def _send(self, batch: list[ExecutionEvent]) -> None:
        try:
            with self._guard:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for event in batch:
                        pipe.xadd(self._key, encode(event), maxlen=MAX_EVENTS, approximate=True)
                    if batch[-1].is_terminal:
                        pipe.expire(self._key, EXPIRE_AFTER_END)
                    else:
                        pipe.expire(self._key, EXPIRE_AFTER_END * 24)  # a run abandoned for good
                    await pipe.execute()
            self.round_trips += 1
        except QueueUnavailableError as exc:
            self._broken = True  # followers elsewhere read the log instead
            log.warning("queue.fanout_unavailable", key=self._key, error=str(exc))

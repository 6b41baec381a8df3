"""A run whose events go to the event log, and to anyone following it in this process.

`RecordedRun.events()` drives the run (iterate it once): the engine runs in a task that hands
each event to an `EventLogWriter` (queued, never waiting) and then to every subscriber. The
terminal event is handed on only once the whole log is stored, so whoever has seen the end can
read the same run back. A driver that stops reading cancels the run, and that is recorded too.

`subscribe()` gives a queue with every event so far and then the live ones, ending with None:
a follower that joins late misses nothing, with no window between "stored" and "live".
Followers on other replicas get the events through Redis (`publisher`), each batch once it is
stored, so what they see never runs ahead of the log.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Protocol

from agentflow_grpc.model.events import NO_USAGE, ExecutionEvent, TokenUsage
from agentflow_grpc.model.records import Execution
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.queue.fanout import EventPublisher
from agentflow_grpc.services.event_log import EventLogWriter
from agentflow_grpc.services.shared_sources import SourceLease
from agentflow_grpc.spec import WorkflowSpec
from agentflow_grpc.storage.database import Database

log = get_logger("agentflow.executions")

Subscription = asyncio.Queue[ExecutionEvent | None]


class RunningExecution(Protocol):
    """What a RecordedRun drives: the engine's Execution, or a resumption of one."""

    @property
    def inputs(self) -> dict[str, Any]: ...

    def events(self) -> AsyncGenerator[ExecutionEvent, None]: ...

    def cancel(self, reason: str = ...) -> None: ...


class RecordedRun:
    def __init__(
        self,
        database: Database,
        record: Execution,
        running: RunningExecution,
        sources: SourceLease,
        spec: WorkflowSpec,
        *,
        on_finish: Callable[[RecordedRun], None] | None = None,
        publisher: EventPublisher | None = None,
    ) -> None:
        self.record = record
        self.spec = spec
        self._database = database
        self._running = running
        self._sources = sources
        self._on_finish = on_finish
        self._publisher = publisher  # to followers on other replicas, once stored
        self._pump: asyncio.Task[None] | None = None
        self._history: list[ExecutionEvent] = []
        self._subscribers: set[Subscription] = set()
        self._finished = asyncio.Event()
        self._abandoned = False

    @property
    def id(self) -> uuid.UUID:
        return self.record.id

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def final_usage(self) -> TokenUsage:
        """The tokens the run spent, as its terminal event says (none before it ended)."""
        if self._history and self._history[-1].is_terminal:
            return TokenUsage.from_dict(self._history[-1].data.get("usage", {}))
        return NO_USAGE

    def cancel(self, reason: str = "cancelled by request") -> None:
        self._running.cancel(reason)

    def abandon(self) -> None:
        """Stop the run without ending its log (no terminal event; events not yet stored are
        dropped): another replica takes it up from what is stored. For a server handing its
        queued runs over as it shuts down."""
        self._abandoned = True
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()

    async def wait(self) -> None:
        """Until the run has ended and its log is stored (or could not be)."""
        await self._finished.wait()

    def subscribe(self) -> Subscription:
        queue: Subscription = asyncio.Queue()
        for event in self._history:
            queue.put_nowait(event)
        if self.finished:
            queue.put_nowait(None)
        else:
            self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: Subscription) -> None:
        self._subscribers.discard(queue)

    async def events(self) -> AsyncIterator[ExecutionEvent]:
        if self._pump is not None:
            raise RuntimeError("a run's events can be iterated only once")
        passed_on = self.subscribe()
        self._pump = asyncio.create_task(self._record(), name=f"record-{self.id}")
        try:
            while (event := await passed_on.get()) is not None:
                yield event
                if event.is_terminal:
                    break
        finally:
            self.unsubscribe(passed_on)
            if not self._pump.done():
                # The caller stopped reading: the run is cancelled, and that is recorded.
                self._running.cancel("the caller stopped reading the execution's events")
            await asyncio.wait({self._pump})  # a cancelled caller does not cancel the recording
        self._pump.result()  # the recording's failure, if it failed

    def _publish(self, event: ExecutionEvent | None) -> None:
        if event is not None:
            self._history.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    async def _record(self) -> None:
        publisher = self._publisher
        writer = EventLogWriter(
            self._database,
            self.record.tenant_id,
            self.id,
            on_stored=None if publisher is None else publisher.publish_all,
        )
        stream = self._running.events()
        try:
            async for event in stream:
                writer.put(event)
                if event.is_terminal:
                    await writer.close()
                self._publish(event)
            await writer.close()
        except BaseException:
            if self._abandoned:
                log.info("execution.handed_over", execution_id=str(self.id))
            else:
                log.exception("execution.recording_failed", execution_id=str(self.id))
            await stream.aclose()  # stops the run: its events can no longer be kept
            await writer.abort()
            raise
        finally:
            self._publish(None)
            self._subscribers.clear()
            if publisher is not None:
                await publisher.close()
            self._finished.set()
            await self._sources.release()
            if self._on_finish is not None:
                self._on_finish(self)

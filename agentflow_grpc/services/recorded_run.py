"""A run whose events go to the event log, and to anyone following it in this process.

`RecordedRun.events()` drives the run (iterate it once): the engine runs in a task that hands
each event to an `EventLogWriter` (queued, never waiting); each batch, once stored, is told to
the engine (whose nodes wait for their outputs to be stored before anything goes on: the run
is durable) and handed to every subscriber. Nobody ever sees an event the log does not hold, so
a run resumed elsewhere after this server died continues exactly where its followers stopped:
nothing missed, nothing twice. A driver that stops reading cancels the run, and that is
recorded too.

`subscribe()` gives a queue with every event so far and then the live ones, ending with None:
a follower that joins late misses nothing, with no window between "stored" and "live".
Followers on other replicas get the events through Redis (`publisher`), each batch once it is
stored, from the moment one asks (`watch()`).

The recording is the run's span, `execution {workflow}` (INTERNAL): a child of the call that
started it (for a queued run, of the `StartExecution` call whose trace its job carries), the
parent of its nodes' spans, ended once the log is stored; its log lines carry the execution.
Its metrics: `agentflow_executions_running` while it records, and once its final event is stored
`agentflow_executions_total{status}` and `agentflow_execution_duration_seconds{status}`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Protocol

from agentflow_grpc.model.errors import RunMovedError
from agentflow_grpc.model.events import NO_USAGE, EventType, ExecutionEvent, TokenUsage
from agentflow_grpc.model.records import Execution
from agentflow_grpc.observability import spans
from agentflow_grpc.observability.logging import bind_context, get_logger
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.queue.fanout import EventPublisher
from agentflow_grpc.services.error_events import RunFailures
from agentflow_grpc.services.event_log import EventLogWriter
from agentflow_grpc.services.shared_sources import SourceLease
from agentflow_grpc.spec import WorkflowSpec
from agentflow_grpc.storage.database import Database

log = get_logger("agentflow.executions")

Subscription = asyncio.Queue[ExecutionEvent | None]

_STATUS = {
    EventType.EXECUTION_COMPLETED: "completed",
    EventType.EXECUTION_FAILED: "failed",
    EventType.EXECUTION_CANCELLED: "cancelled",
}


class RunningExecution(Protocol):
    """What a RecordedRun drives: the engine's Execution (tests give stand-ins)."""

    @property
    def inputs(self) -> dict[str, Any]: ...

    def events(self) -> AsyncGenerator[ExecutionEvent, None]: ...

    def cancel(self, reason: str = ...) -> None: ...

    def stored(self, sequence: int) -> None: ...


class RecordedRun:
    def __init__(
        self,
        database: Database,
        record: Execution,
        running: RunningExecution,
        sources: SourceLease,
        spec: WorkflowSpec,
        *,
        metrics: Metrics,
        on_finish: Callable[[RecordedRun], None] | None = None,
        publisher: EventPublisher | None = None,
    ) -> None:
        self.record = record
        self.spec = spec
        self._database = database
        self._running = running
        self._sources = sources
        self._on_finish = on_finish
        self._metrics = metrics
        self._publisher = publisher  # to followers on other replicas, once stored
        self._pump: asyncio.Task[None] | None = None
        self._history: list[ExecutionEvent] = []
        self._subscribers: set[Subscription] = set()
        self._finished = asyncio.Event()
        self._abandoned = False
        self._detached = False
        # A job owns it (heartbeats.py): if it stops here without ending, it is resumed
        # elsewhere rather than lost.
        self.resumable = False

    @property
    def id(self) -> uuid.UUID:
        return self.record.id

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def ended(self) -> bool:
        """Its terminal event is stored: the run is over for good (not handed over, not cut
        short by a log that could not be written)."""
        return bool(self._history) and self._history[-1].is_terminal

    @property
    def final_usage(self) -> TokenUsage:
        """The tokens the run spent, as its terminal event says (none before it ended)."""
        if self._history and self._history[-1].is_terminal:
            return TokenUsage.from_dict(self._history[-1].data.get("usage", {}))
        return NO_USAGE

    def cancel(self, reason: str = "cancelled by request") -> None:
        self._running.cancel(reason)

    def watch(self) -> None:
        """A follower on another replica wants the events: publish them from now on."""
        if self._publisher is not None:
            self._publisher.watch()

    def detach(self) -> None:
        """Its driver's going away will not cancel it (ExecuteWorkflow with
        `on_disconnect: CONTINUE`): it runs on to its end; call before `events()`."""
        self._detached = True

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
        self._pump.add_done_callback(_retrieved)  # a detached run's failure is logged already
        try:
            while (event := await passed_on.get()) is not None:
                yield event
                if event.is_terminal:
                    break
        finally:
            self.unsubscribe(passed_on)
            runs_on = self._detached and not self._pump.done()  # without its caller
            if not runs_on:
                if not self._pump.done():
                    # The caller stopped reading: the run is cancelled, and that is recorded.
                    self._running.cancel("the caller stopped reading the execution's events")
                # A cancelled caller does not cancel the recording.
                await asyncio.wait({self._pump})
        if self.ended or not self._pump.done():
            return
            return
        if self._abandoned or (self.resumable and not self._pump.cancelled()):
            last = self._history[-1].sequence if self._history else 0
            raise RunMovedError(
                "the server running the execution stopped it before it ended; another replica "
                f"resumes it: follow it with StreamExecution after sequence {last}"
            ) from (None if self._pump.cancelled() else self._pump.exception())
        self._pump.result()  # the recording's failure, if it failed

    def _stored(self, events: list[ExecutionEvent]) -> None:
        """A batch is in the log: the engine's waiting nodes go on, and everyone sees it."""
        self._running.stored(events[-1].sequence)
        if self._publisher is not None:
            self._publisher.publish_all(events)
        for event in events:
            self._publish(event)

    def _publish(self, event: ExecutionEvent | None) -> None:
        if event is not None:
            self._history.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    async def _record(self) -> None:
        record = self.record
        bind_context(execution_id=str(self.id), tenant_id=str(record.tenant_id))  # its task's
        attributes: dict[str, str | int] = {
            "agentflow.execution.id": str(self.id),
            "agentflow.tenant.id": str(record.tenant_id),
            "agentflow.workflow.name": self.spec.name,
            "agentflow.workflow.spec_hash": record.spec_hash,
        }
        if record.workflow_id is not None:
            attributes["agentflow.workflow.id"] = str(record.workflow_id)
        if record.workflow_version is not None:
            attributes["agentflow.workflow.version"] = record.workflow_version
        self._metrics.execution_started()
        try:
            with spans.span(f"execution {self.spec.name}", attributes=attributes) as span:
                await self._record_events(span)
        finally:
            self._metrics.execution_stopped()

    async def _record_events(self, span: spans.Span) -> None:
        publisher = self._publisher
        started = time.perf_counter()
        writer = EventLogWriter(
            self._database,
            self.record.tenant_id,
            self.id,
            metrics=self._metrics,
            on_stored=self._stored,
            failures=RunFailures.of(self.id, self.record.workflow_id, self.spec),
            webhook_source_id=self.record.webhook_source_id,
        )
        stream = self._running.events()
        try:
            async for event in stream:
                writer.put(event)
                if event.is_terminal:
                    await writer.close()
                    self._metrics.execution_ran(_STATUS[event.type], time.perf_counter() - started)
                    _end_span(span, event)
                elif event.type is EventType.EXECUTION_RESUMED:
                    span.set_attribute("agentflow.execution.resumed", True)
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


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _end_span(span: spans.Span, event: ExecutionEvent) -> None:
    """The run's outcome on its span: status, tokens and, for a failure, its code."""
    if not span.is_recording():
        return
    status = event.type.value.removeprefix("execution_")
    span.set_attribute("agentflow.execution.status", status)
    usage = TokenUsage.from_dict(event.data.get("usage", {}))
    span.set_attribute("agentflow.usage.input_tokens", usage.prompt_tokens)
    span.set_attribute("agentflow.usage.output_tokens", usage.completion_tokens)
    if event.type is EventType.EXECUTION_FAILED:
        error = event.data.get("error") or {}
        spans.fail(span, str(error.get("code", "internal")), str(error.get("message", "")))

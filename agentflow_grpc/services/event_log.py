"""Write a run's events to the log as they happen, in batches, without holding the run back.

`EventLogWriter.put()` never waits: events queue up, and one task writes whatever has gathered
in one statement (up to `max_batch`), so a burst of token events costs a few round trips, and a
quiet run writes each event at once. `close()` returns once everything put is stored.

A write that fails on a lost connection is tried again; the retry first reads how far the log
got, so a batch that committed before the connection died is not stored twice. Each append is
timed (retries included) into `agentflow_event_log_append_seconds`, its events counted in
`agentflow_event_log_events_total`; the time of the appends before the terminal event is kept
with it (`executions.event_log_ms`, the run profile's `event_log_ms`).

Given the run's `RunFailures`, a batch's failed node attempts and failed run are recorded as
error-group occurrences in the transaction that stores the batch (services/error_events.py); a
node's final failure is kept back until the event ending the run has come, so both are stored
together. A batch without failures costs nothing more.

Given the run's webhook source (`webhook_source_id`), the batch that holds the terminal event
also stores the run's webhook delivery, in its transaction (services/webhook_payloads.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable

import asyncpg
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from agentflow_grpc.model.errors import UnavailableError
from agentflow_grpc.model.events import ExecutionEvent
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.services.error_events import RunFailures, awaits_the_end, record_failures
from agentflow_grpc.services.webhook_payloads import record_delivery
from agentflow_grpc.storage import executions as store
from agentflow_grpc.storage.database import Database

log = get_logger("agentflow.event_log")

_TRANSIENT = (UnavailableError, asyncpg.PostgresConnectionError, OSError)
_PAUSE = wait_exponential_jitter(initial=0.05, max=1.0, jitter=0.05)  # before a retry


class EventLogWriter:
    def __init__(
        self,
        database: Database,
        tenant_id: uuid.UUID,
        execution_id: uuid.UUID,
        *,
        metrics: Metrics,
        max_batch: int = 500,
        attempts: int = 4,
        on_stored: Callable[[list[ExecutionEvent]], None] | None = None,
        failures: RunFailures | None = None,
        webhook_source_id: uuid.UUID | None = None,
    ) -> None:
        self._database = database
        self._tenant_id = tenant_id
        self._execution_id = execution_id
        self._max_batch = max_batch
        self._attempts = attempts
        self._on_stored = on_stored  # told of each batch once it is committed
        self._metrics = metrics
        self._failures = failures  # None: failures are not recorded as error occurrences
        self._webhook_source_id = webhook_source_id  # None: no webhook when the run ends
        self._queue: asyncio.Queue[ExecutionEvent | None] = asyncio.Queue()
        self._elapsed = 0.0  # seconds spent appending so far
        self._task = asyncio.create_task(self._run(), name=f"event-log-{execution_id}")

    def put(self, event: ExecutionEvent) -> None:
        """Queue `event`; raises the writer's error if writing has failed for good."""
        if self._task.done():
            self._task.result()  # raises what stopped it
            raise RuntimeError("the event log writer is closed")
        self._queue.put_nowait(event)

    async def close(self) -> None:
        """Store everything queued, then stop; raises if it could not be stored."""
        if not self._task.done():
            self._queue.put_nowait(None)
        await self._task

    async def abort(self) -> None:
        """Stop without waiting for the queue (the database is gone, say)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task  # the caller already knows why it aborts

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while True:
                while len(batch) < self._max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                if not self._awaits_the_end(batch):
                    break
                batch.append(await self._queue.get())  # a node's last failure waits for the end
            closing = batch[-1] is None
            events = [event for event in batch if event is not None]
            if events:
                started = time.perf_counter()
                await self._write(events)
                elapsed = time.perf_counter() - started
                self._elapsed += elapsed
                self._metrics.event_log_appended(len(events), elapsed)
                if self._on_stored is not None:
                    self._on_stored(events)
            if closing:
                return

    async def _write(self, events: list[ExecutionEvent]) -> None:
        try:
            # The usual case, without building the retry machinery (tenacity: ~60 µs a write).
            await self._append(events, retry=False)
        except _TRANSIENT:
            if self._attempts < 2:
                raise
            await self._append_again(events)

    async def _append_again(self, events: list[ExecutionEvent]) -> None:
        """The attempts after a first one failed on a lost connection, each after a pause."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_TRANSIENT),
            stop=stop_after_attempt(self._attempts - 1),
            wait=_PAUSE,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number == 1:
                    await asyncio.sleep(_PAUSE(attempt.retry_state))  # after the first try
                await self._append(events, retry=True)

    async def _append(self, events: list[ExecutionEvent], *, retry: bool) -> None:
        async with self._database.tenant(self._tenant_id) as connection:
            if retry:
                execution = await store.get(connection, self._tenant_id, self._execution_id)
                events = [e for e in events if e.sequence > execution.last_sequence]
                log.warning(
                    "event_log.retry", execution_id=str(self._execution_id), remaining=len(events)
                )
            await store.append_events(
                connection,
                self._tenant_id,
                self._execution_id,
                events,
                event_log_ms=round(self._elapsed * 1000, 3),
            )
            if self._failures is not None:
                found = self._failures.occurrences(events)
                await record_failures(connection, self._tenant_id, found)
            if self._webhook_source_id is not None and events and events[-1].is_terminal:
                await record_delivery(
                    connection, self._tenant_id, self._execution_id, self._webhook_source_id
                )

    def _awaits_the_end(self, batch: list[ExecutionEvent | None]) -> bool:
        return self._failures is not None and awaits_the_end(batch)

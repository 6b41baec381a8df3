"""Runs that are not driven here: followed and cancelled across replicas.

A follower reads the event log, then asks the runner to publish the run's events (a watch
request) and reads the live events it publishes through Redis (each once stored), skipping what
the log gave; when the stream lacks what comes next (trimmed, or publishing began after the log
was read), or nobody runs the execution for a while, it reads the log again. Redis down: it
polls the log.

A cancel asks whoever holds the run's lease to stop it (a request key its heartbeat reads, and
pub/sub) and waits for the execution to end; when nobody holds it (queued and not taken up yet,
or its replica died), the run's log is ended here, and a worker that takes it up later finds it
over.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

from agentflow_grpc.model.errors import QueueUnavailableError
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.records import Execution
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.queue.coordination import Coordination
from agentflow_grpc.queue.fanout import StreamGap
from agentflow_grpc.services.run_records import RunRecords

log = get_logger("agentflow.executions")

POLL_INTERVAL = 0.25  # seconds between reads of the log when following a run of another process
CANCEL_WAIT = 15.0  # seconds a cancel waits for another replica to stop its run


class RemoteRuns:
    def __init__(self, coordination: Coordination, records: RunRecords) -> None:
        self._coordination = coordination
        self._records = records

    async def follow(
        self,
        tenant_id: uuid.UUID,
        execution_id: uuid.UUID,
        *,
        after_sequence: int,
        here: Callable[[], bool] | None = None,
    ) -> AsyncIterator[ExecutionEvent]:
        """The events after `after_sequence` from the log, then live from whichever replica
        runs it, until the terminal one (or the execution is final). Stops early, after a
        read of the log, once `here()` says this server runs it now (the caller follows it
        from memory)."""
        last = after_sequence
        while True:
            # The execution is read before its events: once it is final, they hold its end.
            execution, events = await self._records.with_events(
                tenant_id, execution_id, after_sequence=last
            )
            for event in events:
                yield event
                last = event.sequence
                if event.is_terminal:
                    return
            if execution.status.is_final:
                return
            if here is not None and here():
                return
            async for event in self._published(execution_id, last):
                yield event
                last = event.sequence
                if event.is_terminal:
                    return

    async def cancel(self, execution: Execution, reason: str) -> None:
        """Stop a run that is not over and not driven here; it ends `execution_cancelled`."""
        runner = await self._request_cancel(execution.id, reason)
        if runner is None:
            # Nobody runs it (queued and not taken up yet, or its process went away):
            # end its log here; a worker that takes it up later finds it over.
            await self._records.end(
                execution, EventType.EXECUTION_CANCELLED, {"reason": reason, "orphaned": True}
            )
        else:
            await self._until_final(execution.tenant_id, execution.id, CANCEL_WAIT)

    async def _request_cancel(self, execution_id: uuid.UUID, reason: str) -> str | None:
        """Ask the replica running it to stop it; that replica's id, or None if none does (or
        Redis cannot say)."""
        leases = self._coordination.leases
        try:
            await leases.request_cancel(execution_id, reason)
            return await leases.holder(execution_id)
        except QueueUnavailableError:
            return None

    async def _until_final(
        self, tenant_id: uuid.UUID, execution_id: uuid.UUID, timeout: float
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if (await self._records.get(tenant_id, execution_id)).status.is_final:
                return
            await asyncio.sleep(POLL_INTERVAL / 2)

    async def _published(
        self, execution_id: uuid.UUID, after_sequence: int
    ) -> AsyncIterator[ExecutionEvent]:
        """Live events of a run on another replica, through Redis, from `after_sequence`; ends
        when nobody runs it for a while or the stream lost what comes next (then the caller
        reads the log again). Redis down: a pause before the caller reads the log again."""
        leases = self._coordination.leases

        async def still_running() -> bool:
            # Quiet: ask again (a runner that took the run over since, or a lost message), and
            # keep the request alive while following.
            await leases.request_watch(execution_id)
            return await leases.holder(execution_id) is not None

        try:
            await leases.request_watch(execution_id)
            async for event in self._coordination.fanout.follow(
                execution_id, after_sequence=after_sequence, still_running=still_running
            ):
                yield event
        except StreamGap:
            return
        except QueueUnavailableError as exc:
            log.warning(
                "execution.follow_fell_back", execution_id=str(execution_id), error=str(exc)
            )
            await asyncio.sleep(POLL_INTERVAL)

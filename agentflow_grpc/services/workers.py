"""The workers of one replica: tasks that claim background executions from the job queue and
run them here, at most `concurrency` at once, plus the listener for cancel and watch requests
(there even with no workers: runs streamed here need it).

A worker takes up no job while its server drives `max_running_executions` runs (the job waits
for another replica, or for a slot here). A worker that finds Redis down waits and tries
again; a job whose run fails is logged (its events say how it ended) and acknowledged like any
other. `stop()` stops claiming; runs already going are left to the ExecutionService's shutdown.

The replica's webhook dispatcher (services/webhook_dispatcher.py), when given, starts and stops
with the workers.
"""

from __future__ import annotations

import asyncio
import contextlib

from agentflow_grpc.model.errors import QueueUnavailableError
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.services.executions import ExecutionService
from agentflow_grpc.services.queued_runs import JobDeferred
from agentflow_grpc.services.webhook_dispatcher import WebhookDispatcher

log = get_logger("agentflow.workers")

CLAIM_BLOCK = 2.0  # seconds a worker waits on the queue before looking for abandoned jobs again
BACKOFF = 1.0  # seconds to wait after Redis failed
CAPACITY_PAUSE = 0.2  # seconds between looks while the server runs all it may
MAX_DEFER_PAUSE = 5.0  # most seconds a worker rests after a job was put back for its limits


class WorkerPool:
    def __init__(
        self,
        executions: ExecutionService,
        *,
        concurrency: int,
        webhooks: WebhookDispatcher | None = None,
    ) -> None:
        self._executions = executions
        self._concurrency = concurrency
        self._webhooks = webhooks
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def start(self) -> None:
        coordination = self._executions.coordination
        if self._tasks:
            return
        self._stopping.clear()
        self._tasks = [
            asyncio.create_task(self._work(number), name=f"worker-{number}")
            for number in range(self._concurrency)
        ]
        # With no workers too: runs streamed here get cancel and watch requests at once.
        self._tasks.append(
            asyncio.create_task(
                coordination.leases.listen(
                    self._executions.on_cancel_request, self._executions.on_watch_request
                ),
                name="request-listener",
            )
        )
        if self._webhooks is not None:
            self._webhooks.start()
        log.info(
            "workers.started", concurrency=self._concurrency, consumer=coordination.queue.consumer
        )

    async def stop(self) -> None:
        """Stop claiming jobs (a claim under way is let go: it is reclaimed later)."""
        self._stopping.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._webhooks is not None:
            await self._webhooks.stop()

    async def _work(self, number: int) -> None:
        coordination = self._executions.coordination
        while not self._stopping.is_set():
            if not self._executions.reserve_slot():  # jobs wait in the queue (for any replica)
                await asyncio.sleep(CAPACITY_PAUSE)
                continue
            try:
                delivery = await coordination.queue.claim(block=CLAIM_BLOCK)
            except BaseException as exc:
                self._executions.release_slot()
                if not isinstance(exc, QueueUnavailableError):
                    raise
                log.warning("workers.queue_unavailable", worker=number, error=str(exc))
                await asyncio.sleep(BACKOFF)
                continue
            if delivery is None:
                self._executions.release_slot()
                continue
            try:
                # Shielded: stopping the pool does not cut a run short; shutdown ends runs.
                await asyncio.shield(self._executions.run_job(delivery))
            except asyncio.CancelledError:
                raise
            except JobDeferred as deferred:
                await asyncio.sleep(min(deferred.retry_after, MAX_DEFER_PAUSE))
            except Exception:
                log.exception(
                    "workers.job_failed",
                    worker=number,
                    execution_id=str(delivery.job.execution_id),
                )

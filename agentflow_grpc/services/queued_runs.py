"""Background runs through the job queue: queued by any replica, run by a worker of any.

`enqueue` records the execution (checked exactly as a run here) and adds its job; Redis down:
UNAVAILABLE before anything is recorded (or, if the queue failed after the record was stored,
the record ends failed, `execution.not_queued`).

The job carries the W3C trace context of the `StartExecution` call that queued it: the worker
that runs it (here or on any replica, a resumption too) continues that trace, so the run's spans
join the call's, and its log lines carry the execution, the tenant and the trace.

`run` is one job a worker of this replica claimed, in a server slot it reserved: take the run's
lease (another replica holding it runs it), prepare the run from its record, drive it with a
heartbeat, and acknowledge the job once the final event is stored. A job taken over from a
lost worker is resumed from its log (engine/resumption.py: the nodes that completed are
restored, not run again, and its events continue the log); one handed out more than
`max_deliveries` times, or whose spec no longer validates, or whose tenant has no tokens left
today, is ended failed; one whose tenant runs its most at once goes back to the queue
(`JobDeferred`). At shutdown `hand_over` gives a running job back for another replica to take
up at once. A run a worker starts (not a resumed one) records how long it waited, from its
record (stored just before its job was queued) to that start: `agentflow_queue_wait_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

from agentflow_grpc.engine.resumption import Resumption
from agentflow_grpc.model.errors import (
    InvalidSpecError,
    QueueUnavailableError,
    ResourceExhaustedError,
)
from agentflow_grpc.model.records import Execution, Principal
from agentflow_grpc.observability import spans
from agentflow_grpc.observability.logging import bound_context, get_logger
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.queue.coordination import Coordination
from agentflow_grpc.queue.jobs import Delivery, Job
from agentflow_grpc.services.admission import Admission
from agentflow_grpc.services.heartbeats import Heartbeats
from agentflow_grpc.services.recorded_run import RecordedRun
from agentflow_grpc.services.run_preparer import RunPreparer, RunRequest
from agentflow_grpc.services.run_records import RunRecords

log = get_logger("agentflow.executions")


class JobDeferred(Exception):
    """A job put back in the queue for now (its tenant's limits); try again after a while."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"deferred for {retry_after:g} s")
        self.retry_after = retry_after


class QueuedRuns:
    def __init__(
        self,
        coordination: Coordination,
        preparer: RunPreparer,
        admission: Admission,
        records: RunRecords,
        heartbeats: Heartbeats,
        metrics: Metrics,
    ) -> None:
        self._coordination = coordination
        self._preparer = preparer
        self._admission = admission
        self._records = records
        self._heartbeats = heartbeats
        self._metrics = metrics

    async def enqueue(self, principal: Principal, request: RunRequest) -> Execution:
        """Record the execution and queue it for a worker on any replica; a `request_id` seen
        before returns the execution that request started, and queues nothing."""
        queue = self._coordination.queue
        await queue.ready()
        record = await self._preparer.new_record(principal, request)
        if record is None:
            return await self._records.started_by(principal.tenant_id, request.request_id or "")
        try:
            trace_context = tuple(spans.carrier().items())  # the run continues this call's trace
            await queue.enqueue(Job(record.id, record.tenant_id, trace_context))
        except QueueUnavailableError as exc:
            await self._records.fail(record, "execution.not_queued", exc.message)
            raise
        return record

    async def run(self, delivery: Delivery) -> None:
        """Run a claimed job here and acknowledge it once its final event is stored."""
        job = delivery.job
        with (
            bound_context(execution_id=str(job.execution_id), tenant_id=str(job.tenant_id)),
            spans.continued(dict(job.trace_context)),
        ):
            await self._run(delivery)

    async def _run(self, delivery: Delivery) -> None:
        coordination = self._coordination
        job = delivery.job
        try:
            if not await coordination.leases.acquire(job.execution_id):
                self._admission.leave()
                return  # another replica runs it (and will acknowledge it)
            run = await self._run_of(delivery)
        except ResourceExhaustedError as exc:
            # Its tenant runs as many as it may: back to the queue for later (any replica).
            self._admission.leave()
            with contextlib.suppress(QueueUnavailableError):
                await coordination.queue.hand_back(delivery)
                await coordination.leases.release(job.execution_id)
            raise JobDeferred(exc.retry_after) from exc
        except BaseException:
            self._admission.leave()
            with contextlib.suppress(QueueUnavailableError):
                await coordination.leases.release(job.execution_id)
            raise
        if run is None:  # over already, or failed here for good
            self._admission.leave()
            await coordination.queue.ack(delivery)
            await coordination.leases.release(job.execution_id)
            return
        if run.record.last_sequence == 0:  # its first start (a resumed run waited before)
            waited = datetime.now(UTC) - run.record.created_at
            self._metrics.queue_waited(max(0.0, waited.total_seconds()))
        keeper = self._heartbeats.keep(run, delivery)  # acknowledges the job once it ended
        try:
            await _drive(run)
        finally:
            await asyncio.wait({keeper})

    async def hand_over(self, run: RecordedRun) -> bool:
        """A run still going as this server stops: give its job back for another replica to
        take up at once (and resume), rather than cancel it. False if no job owns it (Redis
        was down when it started), or Redis cannot take it back."""
        delivery = self._heartbeats.delivery_of(run.id)
        if delivery is None:
            return False
        try:
            await self._coordination.queue.hand_back(delivery)
        except QueueUnavailableError:
            return False
        run.abandon()
        log.info("execution.handed_back", execution_id=str(run.id))
        return True

    async def _run_of(self, delivery: Delivery) -> RecordedRun | None:
        """The job's run, prepared and listed (its server slot, reserved by the worker, is
        given back as it ends); None when there is nothing to run."""
        stored = await self._preparer.stored_run(delivery.job.tenant_id, delivery.job.execution_id)
        if stored is None:
            return None
        execution = stored.execution
        if delivery.count > self._coordination.max_deliveries:
            await self._records.fail(
                execution,
                "execution.worker_lost",
                f"the execution was taken up {delivery.count - 1} times, and each time the "
                "replica running it stopped before it ended",
            )
            return None
        resumption = None
        if execution.last_sequence > 0:  # it ran before: resumed from its log
            log.warning(
                "execution.resumed",
                execution_id=str(execution.id),
                after_sequence=execution.last_sequence,
                delivery=delivery.count,
            )
            resumption = Resumption(
                await self._records.events(execution.tenant_id, execution.id),
                reason="the replica running it stopped before it ended",
                delivery=delivery.count,
            )
        try:
            prepared = await self._preparer.prepare(
                execution.tenant_id,
                stored.document,
                stored.stamp,
                execution.inputs,
                execution_id=execution.id,
                resume=resumption,
            )
        except InvalidSpecError as exc:  # its sources changed while it waited in the queue
            await self._records.fail(execution, "invalid_spec", exc.message)
            return None
        try:
            try:
                await self._admission.check_tokens(execution.tenant_id)
            except ResourceExhaustedError as exc:
                await self._records.fail(execution, exc.code, exc.message)
                await prepared.release()
                return None
            # Refused (the tenant runs its most at once): the job goes back to the queue.
            await self._admission.hold_slot(
                execution.tenant_id, _api_key_of(execution), execution.id
            )
        except BaseException:
            await prepared.release()
            await self._admission.release_slot(execution.id)
            raise
        return self._preparer.recorded_run(execution, prepared)


async def _drive(run: RecordedRun) -> None:
    """Run a background execution to its end; its events are in the log and with followers."""
    try:
        async for _ in run.events():
            pass
    except Exception:
        log.exception("execution.background_failed", execution_id=str(run.id))


def _api_key_of(execution: Execution) -> uuid.UUID | None:
    """The API key that started the execution (its creator, `api_key:<id>`), if one did."""
    kind, _, value = execution.created_by.partition(":")
    if kind != "api_key":
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None

"""The heartbeat of each run going on here: it holds the run's lease (so no other replica runs
it), keeps its job claimed, and picks up cancel and watch requests from other replicas.

Every run is owned by the job queue: a queued one through the job a worker claimed, a streamed
one through the job `own()` attaches to it as it starts (queue/jobs.py) — so a run whose server
dies is taken up by another replica (or by this one, restarted), whichever way it started.

Every `Coordination.heartbeat` seconds (a third of the visibility timeout) a run's keeper
renews the lease (taking it again if it lapsed), touches the run's job, and reads the run's
cancel and watch requests (in case their pub/sub messages were missed). When the run ends it
acknowledges the job if the run's terminal event is stored (a run handed over, or whose log
could not be written to the end, keeps its job: another worker resumes it) and lets the lease
go. A heartbeat that finds Redis down logs it and beats again: the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from agentflow_grpc.model.errors import QueueUnavailableError
from agentflow_grpc.observability import spans
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.queue.coordination import Coordination
from agentflow_grpc.queue.guard import or_none
from agentflow_grpc.queue.jobs import Delivery, Job
from agentflow_grpc.services.recorded_run import RecordedRun

log = get_logger("agentflow.executions")


class Heartbeats:
    def __init__(self, coordination: Coordination) -> None:
        self._coordination = coordination
        self._keepers: set[asyncio.Task[None]] = set()
        self._deliveries: dict[uuid.UUID, Delivery] = {}  # the jobs of the runs kept here

    async def own(self, run: RecordedRun) -> None:
        """Take the lease of a run streamed here, attach a job to it (claimed by this server),
        and keep both while the run goes on. Redis down: the run still runs, unleased and
        unowned (followers elsewhere read the log; nobody resumes it if this server dies)."""
        coordination = self._coordination
        trace_context = tuple(spans.carrier().items())  # a resumption continues this trace
        try:
            await coordination.leases.acquire(run.id)
            delivery = await coordination.queue.attach(
                Job(run.id, run.record.tenant_id, trace_context)
            )
        except QueueUnavailableError as exc:
            log.warning("execution.not_owned", execution_id=str(run.id), error=str(exc))
            return
        run.resumable = True
        self.keep(run, delivery)

    def delivery_of(self, execution_id: uuid.UUID) -> Delivery | None:
        """The job of a run kept here (None: not kept, or not owned by the queue)."""
        return self._deliveries.get(execution_id)

    def keep(self, run: RecordedRun, delivery: Delivery | None) -> asyncio.Task[None]:
        """While `run` goes on here: renew its (taken) lease, keep `delivery` claimed, pick up
        cancel requests; when it ends, acknowledge `delivery` if the run's end is stored, and
        let the lease go."""
        keeper = asyncio.create_task(self._keeping(run, delivery), name=f"keep-{run.id}")
        self._keepers.add(keeper)
        keeper.add_done_callback(self._keepers.discard)
        if delivery is not None:
            self._deliveries[run.id] = delivery
        return keeper

    async def stopped(self, timeout: float) -> None:
        """Until every keeper has stopped (at shutdown), `timeout` seconds at most."""
        if self._keepers:
            await asyncio.wait(self._keepers, timeout=timeout)

    async def _keeping(self, run: RecordedRun, delivery: Delivery | None) -> None:
        coordination = self._coordination
        try:
            if delivery is not None:
                # A queued run may have been asked for while it waited in the queue (a follower
                # of a StartExecution, before any replica ran it): its pub/sub message found
                # nobody. Now that it is live here (later messages reach it), read what is kept.
                await or_none(self._apply_requests(run))
            while not run.finished:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.wait(), coordination.heartbeat)
                    break
                try:
                    if not await coordination.leases.renew(run.id):
                        log.error("execution.lease_lost", execution_id=str(run.id))
                        await coordination.leases.acquire(run.id)
                    if delivery is not None:
                        await coordination.queue.touch(delivery)
                    await self._apply_requests(run)
                except QueueUnavailableError as exc:
                    log.warning(
                        "execution.heartbeat_failed", execution_id=str(run.id), error=str(exc)
                    )
        finally:
            if delivery is not None:
                self._deliveries.pop(run.id, None)
                if run.ended:  # else another worker takes it up (and resumes it)
                    await or_none(coordination.queue.ack(delivery))
            await or_none(coordination.leases.release(run.id))

    async def _apply_requests(self, run: RecordedRun) -> None:
        """The run's cancel and watch requests, as kept in Redis (QueueUnavailableError)."""
        requests = await self._coordination.leases.requests(run.id)
        if requests.watched:
            run.watch()
        if requests.cancel is not None:
            run.cancel(requests.cancel)

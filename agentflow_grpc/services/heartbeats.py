"""The heartbeat of each run going on here: it holds the run's lease (so no other replica runs
it), keeps its job claimed, and picks up cancel and watch requests from other replicas.

Every `Coordination.heartbeat` seconds (a third of the visibility timeout) a run's keeper
renews the lease (taking it again if it lapsed), touches the job it came from, and reads the
run's cancel and watch requests (in case their pub/sub messages were missed); when the run
ends it lets the lease go. A heartbeat that finds Redis down logs it and beats again: the run
goes on.
"""

from __future__ import annotations

import asyncio
import contextlib

from agentflow_grpc.model.errors import QueueUnavailableError
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.queue.coordination import Coordination
from agentflow_grpc.queue.guard import or_none
from agentflow_grpc.queue.jobs import Delivery
from agentflow_grpc.services.recorded_run import RecordedRun

log = get_logger("agentflow.executions")


class Heartbeats:
    def __init__(self, coordination: Coordination) -> None:
        self._coordination = coordination
        self._keepers: set[asyncio.Task[None]] = set()

    async def lease(self, run: RecordedRun) -> None:
        """Take the lease of a run streamed here and keep it while the run goes on. Redis
        down: the run still runs, unleased (followers elsewhere read the log)."""
        if await or_none(self._coordination.leases.acquire(run.id)):
            self.keep(run, delivery=None)

    def keep(self, run: RecordedRun, delivery: Delivery | None) -> asyncio.Task[None]:
        """While `run` goes on here: renew its (taken) lease, keep `delivery` claimed, pick up
        cancel requests; let the lease go when it ends."""
        keeper = asyncio.create_task(self._keeping(run, delivery), name=f"keep-{run.id}")
        self._keepers.add(keeper)
        keeper.add_done_callback(self._keepers.discard)
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
            await or_none(coordination.leases.release(run.id))

    async def _apply_requests(self, run: RecordedRun) -> None:
        """The run's cancel and watch requests, as kept in Redis (QueueUnavailableError)."""
        requests = await self._coordination.leases.requests(run.id)
        if requests.watched:
            run.watch()
        if requests.cancel is not None:
            run.cancel(requests.cancel)

"""Whether a run may start, and what it gives back when it ends.

Three limits, each checked where it applies:

- this server's cap on runs at once (`AGENTFLOW_MAX_RUNNING_EXECUTIONS`): a streamed start
  takes one of its slots (`enter`, refused with `executions.too_many_running`, counted in
  `agentflow_rate_limit_refusals_total{scope="server_executions"}`), a worker
  reserves one before it claims a job (`reserve`); the run gives it back as it ends (`leave`);
- the tenant's (and its API key's) concurrent executions: a slot in Redis (`hold_slot`), taken
  for a run started here or by a worker, not for a queued one;
- the tenant's tokens per day (`check_tokens`), before anything runs.

`settle(run)` after a run: its concurrency slot back, its tokens counted towards the day's
quota (in a task: the run's end waits for neither). The limiter fails open when Redis is down.
"""

from __future__ import annotations

import asyncio
import uuid

from agentflow_grpc.limits import ExecutionSlot, Limiter
from agentflow_grpc.model.errors import ResourceExhaustedError
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.services.recorded_run import RecordedRun


class Admission:
    def __init__(self, limiter: Limiter, *, max_running: int, metrics: Metrics) -> None:
        self._limiter = limiter
        self._max_running = max_running
        self._metrics = metrics
        self._admitted = 0  # runs running here, or being prepared to
        self._slots: dict[uuid.UUID, ExecutionSlot] = {}  # the tenant's and key's, per run
        self._settling: set[asyncio.Task[None]] = set()

    # --- this server's runs at once ---

    def enter(self) -> None:
        """Take one of this server's run slots for a run about to be prepared, or refuse.
        No await: concurrent starts cannot overshoot the cap."""
        if self._admitted >= self._max_running:
            self._metrics.limit_refused("server_executions")
            raise ResourceExhaustedError(
                f"this server is running as many executions as it may ({self._max_running}); "
                "retry shortly",
                retry_after=1.0,
                code="executions.too_many_running",
            )
        self._admitted += 1

    def reserve(self) -> bool:
        """Take one of this server's run slots for a job a worker is about to claim (False
        when all are taken: the worker claims nothing)."""
        if self._admitted >= self._max_running:
            return False
        self._admitted += 1
        return True

    def leave(self) -> None:
        """Give back a slot taken by `enter` or `reserve`."""
        self._admitted -= 1

    # --- the tenant's limits ---

    async def check_tokens(self, tenant_id: uuid.UUID) -> None:
        """ResourceExhaustedError when the tenant has used its tokens for today."""
        await self._limiter.check_tokens(tenant_id)

    async def hold_slot(
        self, tenant_id: uuid.UUID, api_key_id: uuid.UUID | None, execution_id: uuid.UUID
    ) -> None:
        """Take the run's concurrency slot, held until `settle` or `release_slot`;
        ResourceExhaustedError when the tenant (or the key) runs its most at once."""
        self._slots[execution_id] = await self._limiter.acquire_execution_slot(
            tenant_id, api_key_id, execution_id
        )

    async def release_slot(self, execution_id: uuid.UUID) -> None:
        """Give the run's concurrency slot back, if it holds one."""
        slot = self._slots.pop(execution_id, None)
        if slot is not None:
            await slot.release()

    def settle(self, run: RecordedRun) -> None:
        """After a run: its concurrency slot back, its tokens counted towards the quota."""
        settling = asyncio.create_task(self._settle(run), name=f"settle-{run.id}")
        self._settling.add(settling)
        settling.add_done_callback(self._settling.discard)

    async def _settle(self, run: RecordedRun) -> None:
        await self.release_slot(run.id)
        usage = run.final_usage
        if usage.total_tokens:
            await self._limiter.add_tokens(run.record.tenant_id, usage.total_tokens)

    async def settled(self, timeout: float) -> None:
        """Until the runs that ended are settled (at shutdown), `timeout` seconds at most."""
        if self._settling:
            await asyncio.wait(self._settling, timeout=timeout)

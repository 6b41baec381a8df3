"""Every Redis key AgentFlow's queue uses, under one prefix (`AGENTFLOW_REDIS_PREFIX`), so that
deployments (and test runs) can share a Redis without meeting."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "af"

    @property
    def jobs(self) -> str:
        """The stream of background executions to run (one consumer group of workers)."""
        return f"{self.prefix}:jobs"

    @property
    def cancel_channel(self) -> str:
        """Pub/sub: cancel requests, for whichever replica runs the execution."""
        return f"{self.prefix}:cancel"

    def lease(self, execution_id: uuid.UUID) -> str:
        """Who runs the execution now: a replica id, kept alive by its heartbeat."""
        return f"{self.prefix}:run:{execution_id}:lease"

    def cancel(self, execution_id: uuid.UUID) -> str:
        """A cancel request, read by the runner's heartbeat (pub/sub is the fast path only)."""
        return f"{self.prefix}:run:{execution_id}:cancel"

    def events(self, execution_id: uuid.UUID) -> str:
        """The run's events as they happen (a stream), for followers on any replica."""
        return f"{self.prefix}:run:{execution_id}:events"

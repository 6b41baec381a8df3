"""Every Redis key AgentFlow uses, named in one place, under one prefix.

The prefix is `AGENTFLOW_REDIS_PREFIX` (`af` by default): deployments (and test runs) that
share a Redis give each a prefix of its own and never meet. `app.py` builds one `RedisKeys`
from the setting and hands it to the queue, the limits and the caches; none of them spells a
key itself. Pure string building, no Redis here.

The strings are a contract between replicas: an older and a newer replica may share one Redis,
so a key's form never changes (tests/test_keyspace.py pins each one).

- queue: `{p}:jobs` and `{p}:jobs:attached` (streams), `{p}:cancel` and `{p}:watch` (pub/sub),
  `{p}:run:{execution}:lease`, `…:cancel`, `…:watched`, `…:events`
- limits: `{p}:limit:tenant:{{tenant}}:…`, `{p}:limit:source:{{source}}:…` (a tenant's keys
  share the hash tag `{tenant}` and a source's `{source}`, so each limit script touches keys of
  one cluster slot only: a tenant and its API keys are decided together)
- caches: `{p}:llmcache:{tenant}:{sha256}`, `{p}:wf:{tenant}:{workflow}:v{n}` and `…:current`
- identity: `{p}:invalidate` (pub/sub: API keys revoked or rotated, tenants' limits changed)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

Id = uuid.UUID | str


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str

    # --- the queue: work and events between replicas ---

    @property
    def jobs(self) -> str:
        """The stream of background executions to run (one consumer group of workers)."""
        return f"{self.prefix}:jobs"

    @property
    def attached_jobs(self) -> str:
        """The stream of streamed executions (ExecuteWorkflow), each claimed at once by the
        server that runs it; workers take one up only once it was abandoned."""
        return f"{self.prefix}:jobs:attached"

    @property
    def cancel_channel(self) -> str:
        """Pub/sub: cancel requests, for whichever replica runs the execution."""
        return f"{self.prefix}:cancel"

    @property
    def watch_channel(self) -> str:
        """Pub/sub: a follower on another replica wants a run's events published."""
        return f"{self.prefix}:watch"

    def run_lease(self, execution_id: Id) -> str:
        """Who runs the execution now: a replica id, kept alive by its heartbeat."""
        return f"{self.prefix}:run:{execution_id}:lease"

    def run_cancel(self, execution_id: Id) -> str:
        """A cancel request, read by the runner's heartbeat (pub/sub is the fast path only)."""
        return f"{self.prefix}:run:{execution_id}:cancel"

    def run_watched(self, execution_id: Id) -> str:
        """Followers on other replicas want the run's events, read by the runner's heartbeat
        (pub/sub is the fast path only); they renew it while they follow."""
        return f"{self.prefix}:run:{execution_id}:watched"

    def run_events(self, execution_id: Id) -> str:
        """The run's events as they happen (a stream), for followers on any replica."""
        return f"{self.prefix}:run:{execution_id}:events"

    # --- limits: rate limits, concurrency slots and quotas ---

    def _tenant(self, tenant_id: Id) -> str:
        return f"{self.prefix}:limit:tenant:{{{tenant_id}}}"

    def tenant_requests(self, tenant_id: Id) -> str:
        return f"{self._tenant(tenant_id)}:requests"

    def key_requests(self, tenant_id: Id, api_key_id: Id) -> str:
        return f"{self._tenant(tenant_id)}:key:{api_key_id}:requests"

    def tenant_executions(self, tenant_id: Id) -> str:
        return f"{self._tenant(tenant_id)}:executions"

    def key_executions(self, tenant_id: Id, api_key_id: Id) -> str:
        return f"{self._tenant(tenant_id)}:key:{api_key_id}:executions"

    def tenant_tokens(self, tenant_id: Id, day: date) -> str:
        return f"{self._tenant(tenant_id)}:tokens:{day.isoformat()}"

    def source_requests(self, source_key: str) -> str:
        return f"{self.prefix}:limit:source:{{{source_key}}}:requests"

    def source_tokens(self, source_key: str) -> str:
        return f"{self.prefix}:limit:source:{{{source_key}}}:tokens"

    # --- caches ---

    def llm_response(self, namespace: str, request_key: str) -> str:
        """One cached LLM reply: `namespace` is the tenant, `request_key` the request's
        SHA-256 (`nodes.response_cache.request_key`)."""
        return f"{self.prefix}:llmcache:{namespace}:{request_key}"

    def workflow_version(self, tenant_id: Id, workflow_id: Id, version: int) -> str:
        """A stored version's spec (versions never change)."""
        return f"{self.prefix}:wf:{tenant_id}:{workflow_id}:v{version}"

    def workflow_current(self, tenant_id: Id, workflow_id: Id) -> str:
        """The workflow's current version number (deleted whenever it changes)."""
        return f"{self.prefix}:wf:{tenant_id}:{workflow_id}:current"

    # --- identity ---

    @property
    def invalidation_channel(self) -> str:
        """Pub/sub: what every replica must forget at once (an API key revoked or rotated, a
        tenant's limits changed), so their caches of keys and limits hold nothing stale."""
        return f"{self.prefix}:invalidate"

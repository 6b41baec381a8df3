"""Workflow versions in Redis, for the run path of every replica.

A run of a stored workflow needs its current version number and that version's spec. Versions
never change once stored, so a version's spec is cached for a day
(`{prefix}:wf:{tenant}:{id}:v{n}`, `RedisKeys.workflow_version`); the current version number
(`{prefix}:wf:{tenant}:{id}:current`, `RedisKeys.workflow_current`) changes with every
update, so WorkflowService deletes it when it stores a new version or deletes the workflow
(and it lives a minute at most, which bounds a race between a reader and an update). Tenants
are in every key.

The cache only ever saves reads: any Redis failure is a miss, and the database answers. Reads
are counted in the metrics: `agentflow_cache_requests_total{cache="workflow_current"}` (the
current version number) and `{cache="workflow_versions"}` (a version's spec).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.observability.metric_children import CacheMetrics
from agentflow_grpc.observability.metric_names import WORKFLOW_CURRENT, WORKFLOW_VERSIONS
from agentflow_grpc.observability.metrics import Metrics

log = get_logger("agentflow.caching")

SPEC_TTL = 86_400  # seconds: a version's spec never changes
CURRENT_TTL = 60  # seconds: deleted on update; the TTL only bounds a racing reader


class WorkflowVersionCache:
    def __init__(self, client: redis.Redis, *, keys: RedisKeys, metrics: Metrics) -> None:
        self._redis = client
        self._keys = keys
        self._current = metrics.cache(WORKFLOW_CURRENT)
        self._versions = metrics.cache(WORKFLOW_VERSIONS)

    async def current(self, tenant_id: uuid.UUID, workflow_id: uuid.UUID) -> int | None:
        value = await self._get(self._keys.workflow_current(tenant_id, workflow_id), self._current)
        return int(value) if value is not None else None

    async def spec(
        self, tenant_id: uuid.UUID, workflow_id: uuid.UUID, version: int
    ) -> dict[str, Any] | None:
        value = await self._get(
            self._keys.workflow_version(tenant_id, workflow_id, version), self._versions
        )
        return json.loads(value) if value is not None else None

    async def remember(
        self,
        tenant_id: uuid.UUID,
        workflow_id: uuid.UUID,
        version: int,
        spec: dict[str, Any],
        *,
        current: bool,
    ) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(
                    self._keys.workflow_version(tenant_id, workflow_id, version),
                    json.dumps(spec),
                    ex=SPEC_TTL,
                )
                if current:
                    pipe.set(
                        self._keys.workflow_current(tenant_id, workflow_id), version, ex=CURRENT_TTL
                    )
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.debug("workflow_cache.unavailable", error=str(exc))

    async def forget_current(self, tenant_id: uuid.UUID, workflow_id: uuid.UUID) -> None:
        """The workflow has a new current version, or is gone."""
        try:
            await self._redis.delete(self._keys.workflow_current(tenant_id, workflow_id))
        except (RedisError, OSError) as exc:
            log.warning("workflow_cache.invalidation_failed", error=str(exc))

    async def _get(self, key: str, lookups: CacheMetrics) -> bytes | str | None:
        try:
            value: bytes | str | None = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            log.debug("workflow_cache.unavailable", error=str(exc))
            lookups.error()
            return None
        if value is None:
            lookups.miss()
        else:
            lookups.hit()
        return value

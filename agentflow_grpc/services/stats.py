"""The stats dashboard's numbers for a tenant over a window, from PostgreSQL
(ObservabilityService.GetStats, docs/observability.md).

One tenant transaction counts the window's runs (storage/stats.py) and its top error groups
(storage/error_groups.py); beside it, the job queue's depth and the dependencies' health are
asked at once. Neither of those may fail the call: a queue that cannot say within
`QUEUE_TIMEOUT` is -1, a dependency down is NOT_SERVING. Any role of the tenant may read them
(an internal error group's stack: admins only, as ListErrorGroups shows it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from agentflow_grpc.model.error_groups import ErrorGroup
from agentflow_grpc.model.errors import InvalidArgumentError
from agentflow_grpc.model.records import Principal
from agentflow_grpc.model.stats import (
    ModelTokens,
    PricedModel,
    Stats,
    StatsWindow,
    WindowCounts,
)
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.services import pricing
from agentflow_grpc.services.error_groups import shown_to
from agentflow_grpc.services.health import HealthService
from agentflow_grpc.storage import error_groups
from agentflow_grpc.storage import stats as store
from agentflow_grpc.storage.database import Database

log = get_logger("agentflow.stats")

DEFAULT_WINDOW = timedelta(hours=1)
MAX_WINDOW = timedelta(days=7)
DEFAULT_BUCKETS = 60
MAX_BUCKETS = 240
TOP_ERROR_GROUPS = 5
QUEUE_TIMEOUT = 1.0  # seconds the queue's depth may take before it is -1
UNKNOWN_DEPTH = -1

QueueDepth = Callable[[], Awaitable[int]]


class StatsService:
    def __init__(
        self, database: Database, *, health: HealthService, queue_depth: QueueDepth
    ) -> None:
        self._database = database
        self._health = health
        self._queue_depth = queue_depth  # background runs waiting for a worker (all tenants)

    async def get(
        self, principal: Principal, *, window: timedelta | None = None, bucket_count: int = 0
    ) -> Stats:
        """The tenant's runs over `window` back from now (default 1 h, at most 7 days) in
        `bucket_count` buckets (0: 60; at most 240); InvalidArgumentError naming the field."""
        window, bucket_count = check_window(window, bucket_count)
        # Neither the depth nor the health raises: a failure here is the database's.
        (counts, top_groups), depth, dependencies = await asyncio.gather(
            self._count(principal, window, bucket_count),
            self._depth(),
            self._health.dependencies(),
        )
        return Stats(
            counts=counts,
            models=tuple(_priced(tokens) for tokens in counts.models),
            queue_depth=depth,
            dependencies=dependencies,
            top_error_groups=tuple(shown_to(principal, group) for group in top_groups),
        )

    async def _count(
        self, principal: Principal, window: timedelta, bucket_count: int
    ) -> tuple[WindowCounts, list[ErrorGroup]]:
        tenant_id = principal.tenant_id
        async with self._database.tenant(tenant_id) as connection:
            span = StatsWindow.covering(await store.now(connection), window, bucket_count)
            counts = await store.count_window(connection, tenant_id, span)
            groups = await error_groups.top_groups(
                connection, tenant_id, span.start, TOP_ERROR_GROUPS
            )
        return counts, groups

    async def _depth(self) -> int:
        try:
            async with asyncio.timeout(QUEUE_TIMEOUT):
                return await self._queue_depth()
        except Exception as exc:  # Redis down or slow: the dashboard still answers
            log.debug("stats.queue_depth_unavailable", error=str(exc) or type(exc).__name__)
            return UNKNOWN_DEPTH


def _priced(tokens: ModelTokens) -> PricedModel:
    price = pricing.estimate(
        tokens.provider,
        tokens.model,
        tokens.input_tokens,
        tokens.output_tokens,
        cache_read_tokens=tokens.cache_read_tokens,
        cache_write_tokens=tokens.cache_write_tokens,
    )
    return PricedModel(tokens, price.cost_usd, price.known)


def check_window(window: timedelta | None, bucket_count: int) -> tuple[timedelta, int]:
    """The window and bucket count asked for, defaults applied; InvalidArgumentError for
    anything out of bounds."""
    if window is None:
        window = DEFAULT_WINDOW
    if not timedelta(0) < window <= MAX_WINDOW:
        raise InvalidArgumentError(
            f"window must be more than 0 and at most 7 days ({MAX_WINDOW.total_seconds():g}s), "
            f"got {window.total_seconds():g}s",
            field="window",
        )
    if bucket_count == 0:
        bucket_count = DEFAULT_BUCKETS
    if not 1 <= bucket_count <= MAX_BUCKETS:
        raise InvalidArgumentError(
            f"bucket_count must be from 1 to {MAX_BUCKETS} (0: {DEFAULT_BUCKETS}), "
            f"got {bucket_count}",
            field="bucket_count",
        )
    return window, bucket_count

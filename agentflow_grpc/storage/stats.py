"""The stats dashboard's counts over a window, from the executions table (GetStats,
docs/observability.md).

Every query reads the runs of one tenant created in [window.start, window.end) through the
index `executions_list (tenant_id, created_at DESC, id DESC)`: a range scan of that tenant's
window, however many runs other tenants or other times hold. Runs are counted by their state
now (pending and running are `active`); durations are the engine's (`duration_ms`) over the
runs that have finished; tokens by model are the terminal events' `models`
(`executions.model_usage`, docs/runtime.md).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from agentflow_grpc.model.stats import (
    FailedRun,
    ModelTokens,
    RunTotals,
    StatsBucket,
    StatsWindow,
    WindowCounts,
)
from agentflow_grpc.storage.database import Connection

RECENT_FAILURES = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_FINISHED = "('completed', 'failed', 'cancelled')"


async def now(connection: Connection) -> datetime:
    """The database's clock (the transaction's start), which stamps `created_at`."""
    moment: datetime = await connection.fetchval("SELECT now()")
    return moment


async def count_window(
    connection: Connection, tenant_id: uuid.UUID, window: StatsWindow
) -> WindowCounts:
    """The tenant's runs created in `window`: per bucket, in total, their durations, tokens by
    model and the latest failures."""
    buckets = await _buckets(connection, tenant_id, window)
    percentiles = await _percentiles(connection, tenant_id, window)
    totals = RunTotals(
        total=sum(b.completed + b.failed + b.cancelled + b.active for b in buckets),
        completed=sum(b.completed for b in buckets),
        failed=sum(b.failed for b in buckets),
        cancelled=sum(b.cancelled for b in buckets),
        active=sum(b.active for b in buckets),
        p50_duration_ms=percentiles[0],
        p95_duration_ms=percentiles[1],
        p99_duration_ms=percentiles[2],
    )
    return WindowCounts(
        window=window,
        buckets=buckets,
        totals=totals,
        models=await _models(connection, tenant_id, window),
        recent_failures=await _recent_failures(connection, tenant_id, window),
    )


async def _buckets(
    connection: Connection, tenant_id: uuid.UUID, window: StatsWindow
) -> tuple[StatsBucket, ...]:
    """Every bucket, oldest first, empty ones included (generate_series)."""
    rows = await connection.fetch(
        """
        WITH runs AS (
            SELECT floor((extract(epoch FROM created_at) * 1000000 - $4::bigint)
                         / $5::bigint)::integer AS bucket,
                   status
            FROM executions
            WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3
        )
        SELECT i AS bucket,
               count(r.status) FILTER (WHERE r.status = 'completed') AS completed,
               count(r.status) FILTER (WHERE r.status = 'failed') AS failed,
               count(r.status) FILTER (WHERE r.status = 'cancelled') AS cancelled,
               count(r.status) FILTER (WHERE r.status IN ('pending', 'running')) AS active
        FROM generate_series(0, $6::integer - 1) AS i
        LEFT JOIN runs r ON r.bucket = i
        GROUP BY i
        ORDER BY i
        """,
        tenant_id,
        window.start,
        window.end,
        (window.start - _EPOCH) // _MICROSECOND,
        window.width // _MICROSECOND,
        window.bucket_count,
    )
    return tuple(
        StatsBucket(
            start=window.bucket_start(row["bucket"]),
            completed=row["completed"],
            failed=row["failed"],
            cancelled=row["cancelled"],
            active=row["active"],
        )
        for row in rows
    )


async def _percentiles(
    connection: Connection, tenant_id: uuid.UUID, window: StatsWindow
) -> tuple[float | None, float | None, float | None]:
    """p50, p95 and p99 of `duration_ms` over the finished runs (interpolated between the
    nearest values, as `percentile_cont` does); None when none has finished."""
    values = await connection.fetchval(
        f"""
        SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]::double precision[])
               WITHIN GROUP (ORDER BY duration_ms)
        FROM executions
        WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3
          AND status IN {_FINISHED} AND duration_ms IS NOT NULL
        """,
        tenant_id,
        window.start,
        window.end,
    )
    if values is None:
        return None, None, None
    return values[0], values[1], values[2]


async def _models(
    connection: Connection, tenant_id: uuid.UUID, window: StatsWindow
) -> tuple[ModelTokens, ...]:
    """Calls and tokens per provider and model, summed over the runs' `model_usage`; the most
    tokens (input and output) first."""
    rows = await connection.fetch(
        """
        SELECT coalesce(m ->> 'provider', '') AS provider,
               coalesce(m ->> 'model', '') AS model,
               sum(coalesce((m ->> 'calls')::bigint, 0)) AS calls,
               sum(coalesce((m ->> 'input_tokens')::bigint, 0)) AS input_tokens,
               sum(coalesce((m ->> 'output_tokens')::bigint, 0)) AS output_tokens,
               sum(coalesce((m ->> 'cached_tokens')::bigint, 0)) AS cached_tokens,
               sum(coalesce((m ->> 'cache_read_tokens')::bigint, 0)) AS cache_read_tokens,
               sum(coalesce((m ->> 'cache_write_tokens')::bigint, 0)) AS cache_write_tokens
        FROM executions e
        CROSS JOIN LATERAL jsonb_array_elements(e.model_usage) AS m
        WHERE e.tenant_id = $1 AND e.created_at >= $2 AND e.created_at < $3
          AND e.model_usage IS NOT NULL
        GROUP BY 1, 2
        ORDER BY sum(coalesce((m ->> 'input_tokens')::bigint, 0)
                     + coalesce((m ->> 'output_tokens')::bigint, 0)) DESC,
                 6 DESC, 1, 2
        """,
        tenant_id,
        window.start,
        window.end,
    )
    return tuple(
        ModelTokens(
            provider=row["provider"],
            model=row["model"],
            calls=int(row["calls"]),
            input_tokens=int(row["input_tokens"]),
            output_tokens=int(row["output_tokens"]),
            cached_tokens=int(row["cached_tokens"]),
            cache_read_tokens=int(row["cache_read_tokens"]),
            cache_write_tokens=int(row["cache_write_tokens"]),
        )
        for row in rows
    )


async def _recent_failures(
    connection: Connection, tenant_id: uuid.UUID, window: StatsWindow
) -> tuple[FailedRun, ...]:
    rows = await connection.fetch(
        """
        SELECT id, workflow_id, error, created_at, duration_ms
        FROM executions
        WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND status = 'failed'
        ORDER BY created_at DESC, id DESC
        LIMIT $4
        """,
        tenant_id,
        window.start,
        window.end,
        RECENT_FAILURES,
    )
    return tuple(_failed_run(row) for row in rows)


def _failed_run(row: Any) -> FailedRun:
    error = row["error"] if isinstance(row["error"], dict) else {}
    return FailedRun(
        execution_id=row["id"],
        workflow_id=row["workflow_id"],
        error_code=str(error.get("code") or ""),
        error_message=str(error.get("message") or ""),
        created_at=row["created_at"],
        duration_ms=row["duration_ms"],
    )

"""Executions and their event log.

An execution row holds what a run is (workflow version or inline spec, inputs, who started it)
and what became of it (status, outputs, error, token usage, timings). Its events are stored with
`(execution_id, sequence)` as the key, and each append must continue exactly where the log
ends (`executions.last_sequence`), in the same statement that moves it on: a duplicated, skipped
or reordered event is refused, never stored. The row's status follows the events appended:
`execution_started` makes it running, a terminal event completes, fails or cancels it, and
nothing may be appended after that.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from agentflow_grpc.model.errors import ConflictError, NotFoundError
from agentflow_grpc.model.events import EventType, ExecutionEvent, TokenUsage
from agentflow_grpc.model.records import Execution, ExecutionStatus
from agentflow_grpc.storage.database import Connection
from agentflow_grpc.storage.event_progress import RowProgress
from agentflow_grpc.storage.pagination import (
    Page,
    by_creation,
    continue_after,
    page_of,
    page_size,
)


class EventLogError(ConflictError):
    """An append that does not continue the log: a gap, a duplicate, or after the end."""

    code = "event_log.out_of_order"


async def create(
    connection: Connection,
    tenant_id: uuid.UUID,
    *,
    spec_hash: str,
    inputs: dict[str, Any],
    actor: str,
    workflow_id: uuid.UUID | None = None,
    workflow_version: int | None = None,
    inline_spec: dict[str, Any] | None = None,
    execution_id: uuid.UUID | None = None,
    request_id: str | None = None,
    trace_id: str | None = None,
    webhook_source_id: uuid.UUID | None = None,
) -> Execution:
    """A pending execution of a stored workflow version, or of an inline spec; with a
    `request_id` seen before, the execution that request made (its id tells it apart).
    `trace_id`: the trace of the call that started it (32 hex digits); `webhook_source_id`:
    the `webhook` source told when it ends."""
    row = await connection.fetchrow(
        """
        INSERT INTO executions (id, tenant_id, workflow_id, workflow_version, inline_spec,
                                spec_hash, status, inputs, created_by, request_id, trace_id,
                                webhook_source_id)
        VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $11)
        ON CONFLICT (tenant_id, request_id) WHERE request_id IS NOT NULL DO NOTHING
        RETURNING *
        """,
        execution_id or uuid.uuid4(),
        tenant_id,
        workflow_id,
        workflow_version,
        inline_spec,
        spec_hash,
        inputs,
        actor,
        request_id,
        trace_id,
        webhook_source_id,
    )
    if row is None:  # the request_id was seen before
        earlier = await find_by_request_id(connection, tenant_id, request_id or "")
        assert earlier is not None
        return earlier
    return _execution(row)


async def find_by_request_id(
    connection: Connection, tenant_id: uuid.UUID, request_id: str
) -> Execution | None:
    row = await connection.fetchrow(
        "SELECT * FROM executions WHERE tenant_id = $1 AND request_id = $2", tenant_id, request_id
    )
    return None if row is None else _execution(row)


async def inline_spec(
    connection: Connection, tenant_id: uuid.UUID, execution_id: uuid.UUID
) -> dict[str, Any] | None:
    """The spec an execution of an inline spec runs (None for a stored workflow's)."""
    spec: dict[str, Any] | None = await connection.fetchval(
        "SELECT inline_spec FROM executions WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        execution_id,
    )
    return spec


async def get(connection: Connection, tenant_id: uuid.UUID, execution_id: uuid.UUID) -> Execution:
    row = await connection.fetchrow(
        "SELECT * FROM executions WHERE tenant_id = $1 AND id = $2", tenant_id, execution_id
    )
    if row is None:
        raise NotFoundError(f"execution {execution_id} not found")
    return _execution(row)


async def list_executions(
    connection: Connection,
    tenant_id: uuid.UUID,
    *,
    size: int = 0,
    token: str = "",
    statuses: Collection[ExecutionStatus] = (),
    workflow_id: uuid.UUID | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> Page[Execution]:
    """Newest first, filtered by status (any of), workflow and creation time [after, before)."""
    limit = page_size(size)
    status_values = sorted(status.value for status in statuses)
    filters = {
        "statuses": status_values,
        "workflow": workflow_id,
        "after": created_after,
        "before": created_before,
    }
    after = continue_after(token, filters, kinds=(datetime, uuid.UUID))
    rows = await connection.fetch(
        """
        SELECT * FROM executions
        WHERE tenant_id = $1
          AND (cardinality($2::text[]) = 0 OR status = ANY ($2))
          AND ($3::uuid IS NULL OR workflow_id = $3)
          AND ($4::timestamptz IS NULL OR created_at >= $4)
          AND ($5::timestamptz IS NULL OR created_at < $5)
          AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT $8
        """,
        tenant_id,
        status_values,
        workflow_id,
        created_after,
        created_before,
        after[0],
        after[1],
        limit + 1,
    )
    return page_of([_execution(row) for row in rows], limit, filters, by_creation)


async def append_events(
    connection: Connection,
    tenant_id: uuid.UUID,
    execution_id: uuid.UUID,
    events: Sequence[ExecutionEvent],
    *,
    event_log_ms: float | None = None,
) -> None:
    """Store `events` (consecutive sequence numbers, continuing the log) in one statement.

    The events' data travel as one JSON array (encoded once, not once per event).
    `event_log_ms`: the time spent storing the run's events so far, kept with its terminal event
    (ignored on other batches)."""
    if not events:
        return
    first = events[0].sequence
    for offset, event in enumerate(events):
        if event.sequence != first + offset:
            raise EventLogError(
                f"events to append are not consecutive: {event.sequence} follows "
                f"{first + offset - 1}"
            )
        if event.is_terminal and offset != len(events) - 1:
            raise EventLogError(
                f"event {event.sequence} ({event.type.value}) ends the execution, "
                "so no event may follow it"
            )
    progress = RowProgress.of(events)
    status = await connection.fetchval(
        """
        WITH advanced AS (
            UPDATE executions SET
                last_sequence = $4,
                status = coalesce($5, status),
                started_at = coalesce(started_at, $6),
                finished_at = coalesce($7, finished_at),
                outputs = coalesce($8, outputs),
                error = coalesce($9, error),
                prompt_tokens = coalesce($10, prompt_tokens),
                completion_tokens = coalesce($11, completion_tokens),
                total_tokens = coalesce($12, total_tokens),
                duration_ms = coalesce($13, duration_ms),
                cached_tokens = coalesce($20, cached_tokens),
                model_usage = coalesce($21, model_usage),
                event_log_ms = coalesce($22, event_log_ms)
            WHERE tenant_id = $1 AND id = $2 AND last_sequence = $3 - 1
              AND status NOT IN ('completed', 'failed', 'cancelled')
            RETURNING 1
        ), stored AS (
            INSERT INTO execution_events (tenant_id, execution_id, sequence, type, node_id,
                                          attempt, occurred_at, data)
            SELECT $1, $2, e.sequence, e.type, e.node_id, e.attempt, e.occurred_at, e.data
            FROM ROWS FROM (unnest($14::bigint[]), unnest($15::text[]), unnest($16::text[]),
                            unnest($17::integer[]), unnest($18::timestamptz[]),
                            jsonb_array_elements($19::jsonb))
                 AS e(sequence, type, node_id, attempt, occurred_at, data)
            WHERE EXISTS (SELECT FROM advanced)
            RETURNING 1
        )
        SELECT count(*) FROM stored
        """,
        tenant_id,
        execution_id,
        first,
        events[-1].sequence,
        *progress.columns(),
        [event.sequence for event in events],
        [event.type.value for event in events],
        [event.node_id for event in events],
        [event.attempt for event in events],
        [event.timestamp for event in events],
        [event.data for event in events],
        progress.cached_tokens,
        progress.model_usage,
        event_log_ms if progress.final else None,
    )
    if status != len(events):
        await _explain_refused_append(connection, tenant_id, execution_id, first)


async def list_events(
    connection: Connection,
    tenant_id: uuid.UUID,
    execution_id: uuid.UUID,
    *,
    after_sequence: int = 0,
    limit: int | None = None,
) -> list[ExecutionEvent]:
    """Stored events after `after_sequence`, in order. NotFound for an unknown execution."""
    rows = await connection.fetch(
        """
        SELECT * FROM execution_events
        WHERE tenant_id = $1 AND execution_id = $2 AND sequence > $3
        ORDER BY sequence
        LIMIT $4
        """,
        tenant_id,
        execution_id,
        after_sequence,
        limit,
    )
    if not rows:
        await get(connection, tenant_id, execution_id)
    return [
        ExecutionEvent(
            execution_id=str(row["execution_id"]),
            sequence=row["sequence"],
            timestamp=row["occurred_at"],
            type=EventType(row["type"]),
            node_id=row["node_id"],
            attempt=row["attempt"],
            data=row["data"],
        )
        for row in rows
    ]


async def _explain_refused_append(
    connection: Connection, tenant_id: uuid.UUID, execution_id: uuid.UUID, first: int
) -> None:
    execution = await get(connection, tenant_id, execution_id)
    if execution.status.is_final:
        raise EventLogError(
            f"execution {execution_id} has ended ({execution.status.value}); no events may follow"
        )
    raise EventLogError(
        f"execution {execution_id} has {execution.last_sequence} events stored; the next must "
        f"be {execution.last_sequence + 1}, not {first}"
    )


def _summed(model_usage: Any, name: str) -> int:
    """A count summed over a run's `model_usage` entries (the prompt cache's tokens live only
    there, not in columns of their own)."""
    if not isinstance(model_usage, list):
        return 0
    counts = (entry.get(name) for entry in model_usage if isinstance(entry, dict))
    return sum(count for count in counts if isinstance(count, int))


def _execution(row: Any) -> Execution:
    return Execution(
        id=row["id"],
        tenant_id=row["tenant_id"],
        workflow_id=row["workflow_id"],
        workflow_version=row["workflow_version"],
        spec_hash=row["spec_hash"],
        status=ExecutionStatus(row["status"]),
        inputs=row["inputs"],
        outputs=row["outputs"],
        error=row["error"],
        usage=TokenUsage(
            row["prompt_tokens"],
            row["completion_tokens"],
            row["total_tokens"],
            row["cached_tokens"],
            _summed(row["model_usage"], "cache_read_tokens"),
            _summed(row["model_usage"], "cache_write_tokens"),
        ),
        last_sequence=row["last_sequence"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration_ms=row["duration_ms"],
        created_by=row["created_by"],
        trace_id=row["trace_id"],
        event_log_ms=row["event_log_ms"],
        model_usage=row["model_usage"] or [],
        webhook_source_id=row["webhook_source_id"],
    )

"""Error groups and their occurrences (migration 0005): recorded in the caller's transaction,
listed, read one at a time, and counted over a window for the stats dashboard.

A group's row is counted up in place (`occurrence_count`, `failed_execution_count`, first and
last seen, the latest message and internal stack); occurrences are append-only. Recording takes
one statement however many occurrences and groups a batch holds; groups are upserted in
fingerprint order, so two transactions that touch the same groups cannot deadlock.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from agentflow_grpc.model.error_groups import ErrorGroup, ErrorKind, ErrorOccurrence, NewOccurrence
from agentflow_grpc.model.errors import NotFoundError
from agentflow_grpc.storage.database import Connection
from agentflow_grpc.storage.pagination import Page, continue_after, page_of, page_size

LATEST_OCCURRENCES = 20  # with a group read on its own
WORKFLOWS_LISTED = 100  # workflow ids with a group (workflow_count counts them all)


@dataclass
class _GroupChange:
    """What one batch adds to one group."""

    latest: NewOccurrence
    first_seen_at: datetime
    count: int = 0
    failed: int = 0
    stack: str = ""


async def record(
    connection: Connection, tenant_id: uuid.UUID, occurrences: Sequence[NewOccurrence]
) -> None:
    """Count `occurrences` into their groups (created as needed) and store them."""
    if not occurrences:
        return
    changes: dict[str, _GroupChange] = {}
    for item in occurrences:
        change = changes.get(item.fingerprint)
        if change is None:
            change = changes[item.fingerprint] = _GroupChange(item, item.occurred_at)
        change.count += 1
        change.failed += item.ended_execution
        change.first_seen_at = min(change.first_seen_at, item.occurred_at)
        if item.occurred_at >= change.latest.occurred_at:
            change.latest = item
        if item.stack:
            change.stack = item.stack
    ordered = [changes[key] for key in sorted(changes)]
    await connection.execute(
        """
        WITH groups AS (
            INSERT INTO error_groups AS g (
                tenant_id, fingerprint, code, node_type, kind, message_pattern, sample_message,
                stack, occurrence_count, failed_execution_count, first_seen_at, last_seen_at
            )
            SELECT $1, * FROM unnest(
                $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::text[], $9::bigint[], $10::bigint[], $11::timestamptz[], $12::timestamptz[]
            )
            ON CONFLICT (tenant_id, fingerprint) DO UPDATE SET
                occurrence_count = g.occurrence_count + excluded.occurrence_count,
                failed_execution_count = g.failed_execution_count + excluded.failed_execution_count,
                first_seen_at = least(g.first_seen_at, excluded.first_seen_at),
                last_seen_at = greatest(g.last_seen_at, excluded.last_seen_at),
                sample_message = CASE WHEN excluded.last_seen_at >= g.last_seen_at
                    THEN excluded.sample_message ELSE g.sample_message END,
                stack = CASE WHEN excluded.stack <> '' AND excluded.last_seen_at >= g.last_seen_at
                    THEN excluded.stack ELSE g.stack END
        )
        INSERT INTO error_occurrences (
            tenant_id, fingerprint, kind, execution_id, workflow_id, node_id, attempt, method,
            message, ended_execution, occurred_at
        )
        SELECT $1, * FROM unnest(
            $13::text[], $14::text[], $15::uuid[], $16::uuid[], $17::text[], $18::integer[],
            $19::text[], $20::text[], $21::boolean[], $22::timestamptz[]
        )
        """,
        tenant_id,
        [change.latest.fingerprint for change in ordered],
        [change.latest.code for change in ordered],
        [change.latest.node_type for change in ordered],
        [change.latest.kind.value for change in ordered],
        [change.latest.message_pattern for change in ordered],
        [change.latest.message for change in ordered],
        [change.stack for change in ordered],
        [change.count for change in ordered],
        [change.failed for change in ordered],
        [change.first_seen_at for change in ordered],
        [change.latest.occurred_at for change in ordered],
        [item.fingerprint for item in occurrences],
        [item.kind.value for item in occurrences],
        [item.execution_id for item in occurrences],
        [item.workflow_id for item in occurrences],
        [item.node_id for item in occurrences],
        [item.attempt for item in occurrences],
        [item.method for item in occurrences],
        [item.message for item in occurrences],
        [item.ended_execution for item in occurrences],
        [item.occurred_at for item in occurrences],
    )


async def list_groups(
    connection: Connection,
    tenant_id: uuid.UUID,
    *,
    size: int = 0,
    token: str = "",
    last_seen_after: datetime | None = None,
    code: str | None = None,
) -> Page[ErrorGroup]:
    """The most recently seen first (then by fingerprint), filtered by last seen and code;
    without their occurrences. A group seen again while a client pages moves to the front."""
    limit = page_size(size)
    filters = {"last_seen_after": last_seen_after, "code": code}
    after = continue_after(token, filters, kinds=(datetime, str))
    rows = await connection.fetch(
        """
        SELECT * FROM error_groups
        WHERE tenant_id = $1
          AND ($2::timestamptz IS NULL OR last_seen_at >= $2)
          AND ($3::text IS NULL OR code = $3)
          AND ($4::timestamptz IS NULL
               OR last_seen_at < $4 OR (last_seen_at = $4 AND fingerprint > $5::text))
        ORDER BY last_seen_at DESC, fingerprint
        LIMIT $6
        """,
        tenant_id,
        last_seen_after,
        code,
        after[0],
        after[1],
        limit + 1,
    )
    groups = await _with_workflows(connection, tenant_id, [_group(row) for row in rows])
    return page_of(groups, limit, filters, lambda group: [group.last_seen_at, group.fingerprint])


async def get_group(connection: Connection, tenant_id: uuid.UUID, fingerprint: str) -> ErrorGroup:
    """The group with its latest occurrences (newest first) and the workflows it affected."""
    row = await connection.fetchrow(
        "SELECT * FROM error_groups WHERE tenant_id = $1 AND fingerprint = $2",
        tenant_id,
        fingerprint,
    )
    if row is None:
        raise NotFoundError(f"error group {fingerprint} not found")
    occurrences = await connection.fetch(
        """
        SELECT * FROM error_occurrences
        WHERE tenant_id = $1 AND fingerprint = $2
        ORDER BY occurred_at DESC, id DESC
        LIMIT $3
        """,
        tenant_id,
        fingerprint,
        LATEST_OCCURRENCES,
    )
    [group] = await _with_workflows(connection, tenant_id, [_group(row)])
    return replace(group, occurrences=tuple(_occurrence(item) for item in occurrences))


async def top_groups(
    connection: Connection, tenant_id: uuid.UUID, since: datetime, limit: int
) -> list[ErrorGroup]:
    """The `limit` groups with the most occurrences at or after `since`, most first; their
    `count`, `failed_execution_count` and workflows are those of the window."""
    rows = await connection.fetch(
        """
        WITH counted AS (
            SELECT fingerprint, count(*) AS in_window,
                   count(*) FILTER (WHERE ended_execution) AS ended_in_window
            FROM error_occurrences
            WHERE tenant_id = $1 AND occurred_at >= $2
            GROUP BY fingerprint
            ORDER BY in_window DESC, fingerprint
            LIMIT $3
        )
        SELECT g.*, c.in_window, c.ended_in_window
        FROM counted c
        JOIN error_groups g ON g.tenant_id = $1 AND g.fingerprint = c.fingerprint
        ORDER BY c.in_window DESC, g.last_seen_at DESC, g.fingerprint
        """,
        tenant_id,
        since,
        limit,
    )
    groups = [
        replace(_group(row), count=row["in_window"], failed_execution_count=row["ended_in_window"])
        for row in rows
    ]
    return await _with_workflows(connection, tenant_id, groups, since=since)


async def _with_workflows(
    connection: Connection,
    tenant_id: uuid.UUID,
    groups: list[ErrorGroup],
    *,
    since: datetime | None = None,
) -> list[ErrorGroup]:
    """`groups` with the workflows their occurrences (at or after `since`) came from."""
    if not groups:
        return groups
    rows = await connection.fetch(
        """
        SELECT fingerprint, workflow_id, max(occurred_at) AS last_seen_at
        FROM error_occurrences
        WHERE tenant_id = $1 AND fingerprint = ANY ($2::text[]) AND workflow_id IS NOT NULL
          AND ($3::timestamptz IS NULL OR occurred_at >= $3)
        GROUP BY fingerprint, workflow_id
        """,
        tenant_id,
        [group.fingerprint for group in groups],
        since,
    )
    affected: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        affected[row["fingerprint"]].append(row)
    found = []
    for group in groups:
        workflows = sorted(
            affected[group.fingerprint],
            key=lambda row: (row["last_seen_at"], row["workflow_id"]),
            reverse=True,
        )
        found.append(
            replace(
                group,
                workflow_ids=tuple(row["workflow_id"] for row in workflows[:WORKFLOWS_LISTED]),
                workflow_count=len(workflows),
            )
        )
    return found


def _group(row: Any) -> ErrorGroup:
    return ErrorGroup(
        fingerprint=row["fingerprint"],
        code=row["code"],
        node_type=row["node_type"],
        kind=ErrorKind(row["kind"]),
        message_pattern=row["message_pattern"],
        sample_message=row["sample_message"],
        stack=row["stack"],
        count=row["occurrence_count"],
        failed_execution_count=row["failed_execution_count"],
        first_seen_at=row["first_seen_at"],
        last_seen_at=row["last_seen_at"],
    )


def _occurrence(row: Any) -> ErrorOccurrence:
    return ErrorOccurrence(
        kind=ErrorKind(row["kind"]),
        message=row["message"],
        occurred_at=row["occurred_at"],
        execution_id=row["execution_id"],
        workflow_id=row["workflow_id"],
        node_id=row["node_id"],
        attempt=row["attempt"],
        method=row["method"],
        ended_execution=row["ended_execution"],
    )

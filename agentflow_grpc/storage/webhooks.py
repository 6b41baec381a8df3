"""Completion webhook deliveries and their attempts (migration 0006). docs/webhooks.md.

A delivery is created in the caller's transaction (the one storing its run's terminal event),
with a `pg_notify` on `NOTIFY_CHANNEL` that PostgreSQL sends on commit, so dispatchers on
every replica can wake at once. Dispatchers `lease` due deliveries across tenants (system
scope): `FOR UPDATE SKIP LOCKED` picks rows no other transaction holds, and the lease moves
`next_attempt_at` past the send's timeout, so no other dispatcher takes the same delivery
while it is being sent, and one that dies mid-send leaves it to be taken up again. An attempt
is recorded only by the lease's holder (`lease_token`), with what happens next decided in the
same statement against the database's clock: delivered, given up, or due again later.

`notifications(dsn, callback)` listens on its own connection (outside the pool, which it would
otherwise hold for good) and calls `callback` whenever a delivery has been made anywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from agentflow_grpc.model.webhooks import DeliveryState, WebhookAttempt, WebhookDelivery
from agentflow_grpc.storage.database import APP_ROLE, Connection

NOTIFY_CHANNEL = "agentflow_webhooks"


@asynccontextmanager
async def notifications(dsn: str, callback: Callable[[], None]) -> AsyncIterator[Connection]:
    """A connection of its own that calls `callback` on each new delivery while it is open."""
    connection = await asyncpg.connect(
        dsn, server_settings={"role": APP_ROLE, "application_name": "agentflow-webhooks"}
    )
    try:
        await connection.add_listener(NOTIFY_CHANNEL, lambda *_: callback())
        yield connection
    finally:
        await connection.close(timeout=5)


async def create_delivery(
    connection: Connection,
    tenant_id: uuid.UUID,
    *,
    execution_id: uuid.UUID,
    source_id: uuid.UUID,
    event_type: str,
    payload: dict[str, Any],
    delivery_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """A pending delivery, due now; dispatchers are notified when the transaction commits."""
    created: uuid.UUID = await connection.fetchval(
        """
        WITH created AS (
            INSERT INTO webhook_deliveries (id, tenant_id, execution_id, source_id, event_type,
                                            payload)
            VALUES ($1, $2, $3, $4, $5, $6)
            RETURNING id
        )
        SELECT id FROM created, pg_notify($7, '')
        """,
        delivery_id or uuid.uuid4(),
        tenant_id,
        execution_id,
        source_id,
        event_type,
        payload,
        NOTIFY_CHANNEL,
    )
    return created


async def lease_due(
    connection: Connection, *, token: uuid.UUID, limit: int, lease_seconds: float
) -> list[WebhookDelivery]:
    """Up to `limit` pending deliveries that are due, oldest due first, leased to `token` for
    `lease_seconds` (a system-scope transaction: every tenant's)."""
    rows = await connection.fetch(
        """
        UPDATE webhook_deliveries AS d
        SET lease_token = $1, next_attempt_at = now() + make_interval(secs => $2)
        FROM (
            SELECT id FROM webhook_deliveries
            WHERE state = 'pending' AND next_attempt_at <= now()
            ORDER BY next_attempt_at
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ) AS due
        WHERE d.id = due.id
        RETURNING d.*
        """,
        token,
        lease_seconds,
        limit,
    )
    return [_delivery(row) for row in rows]


async def record_attempt(
    connection: Connection,
    delivery: WebhookDelivery,
    *,
    token: uuid.UUID,
    started_at: datetime,
    duration_ms: float,
    status_code: int | None,
    error: str,
    delivered: bool,
    permanent: bool,
    retry_delay: float,
    retry_window: float,
) -> DeliveryState | None:
    """Record one attempt of a delivery leased to `token` and what follows: delivered; failed
    when `permanent` or when the next try (`retry_delay` seconds on) would fall past
    `retry_window` seconds after the delivery was made; else pending until then. None when the
    lease was lost (another dispatcher has the delivery now): nothing is recorded."""
    state: str | None = await connection.fetchval(
        """
        WITH moved AS (
            UPDATE webhook_deliveries SET
                attempts = attempts + 1,
                lease_token = NULL,
                last_error = $4,
                state = CASE
                    WHEN $5 THEN 'delivered'
                    WHEN $6 OR now() + make_interval(secs => $7)
                               > created_at + make_interval(secs => $8) THEN 'failed'
                    ELSE 'pending' END,
                delivered_at = CASE WHEN $5 THEN now() END,
                next_attempt_at = CASE WHEN $5 OR $6 THEN now()
                                       ELSE now() + make_interval(secs => $7) END
            WHERE tenant_id = $1 AND id = $2 AND lease_token = $3 AND state = 'pending'
            RETURNING tenant_id, id, attempts, state
        ), attempted AS (
            INSERT INTO webhook_delivery_attempts (tenant_id, delivery_id, attempt, started_at,
                                                   duration_ms, status_code, error)
            SELECT tenant_id, id, attempts, $9, $10, $11, $4 FROM moved
        )
        SELECT state FROM moved
        """,
        delivery.tenant_id,
        delivery.id,
        token,
        error,
        delivered,
        permanent,
        retry_delay,
        retry_window,
        started_at,
        duration_ms,
        status_code,
    )
    return None if state is None else DeliveryState(state)


async def list_for_execution(
    connection: Connection, tenant_id: uuid.UUID, execution_id: uuid.UUID
) -> list[WebhookDelivery]:
    """The deliveries of an execution, oldest first, each with its attempts in order."""
    rows = await connection.fetch(
        """
        SELECT * FROM webhook_deliveries
        WHERE tenant_id = $1 AND execution_id = $2
        ORDER BY created_at, id
        """,
        tenant_id,
        execution_id,
    )
    if not rows:
        return []
    attempt_rows = await connection.fetch(
        """
        SELECT * FROM webhook_delivery_attempts
        WHERE tenant_id = $1 AND delivery_id = ANY ($2::uuid[])
        ORDER BY delivery_id, attempt
        """,
        tenant_id,
        [row["id"] for row in rows],
    )
    attempts: dict[uuid.UUID, list[WebhookAttempt]] = {}
    for row in attempt_rows:
        attempts.setdefault(row["delivery_id"], []).append(_attempt(row))
    return [_delivery(row, attempts.get(row["id"], [])) for row in rows]


def _delivery(row: Any, attempts: Sequence[WebhookAttempt] = ()) -> WebhookDelivery:
    return WebhookDelivery(
        id=row["id"],
        tenant_id=row["tenant_id"],
        execution_id=row["execution_id"],
        source_id=row["source_id"],
        event_type=row["event_type"],
        payload=row["payload"],
        state=DeliveryState(row["state"]),
        attempt_count=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
        last_error=row["last_error"],
        attempts=list(attempts),
    )


def _attempt(row: Any) -> WebhookAttempt:
    return WebhookAttempt(
        attempt=row["attempt"],
        started_at=row["started_at"],
        duration_ms=row["duration_ms"],
        status_code=row["status_code"],
        error=row["error"],
    )

"""The audit log: one append-only row per change (written in the change's own transaction) and
per refusal, each chained by hash to the row before it in its chain.

Each row says who (the actor), what (action, resource type and id), when, from where (the
call's request id, trace id and source address: model/audit_origin.py), with what outcome, and
the SHA-256 of the resource's state before and after (canonical JSON of its public fields,
never secrets). The app role may only INSERT and SELECT; a trigger refuses UPDATE and DELETE
even to the table's owner.

Chains. Each tenant's rows form one chain, and the rows of no known tenant (`tenant_id` NULL:
a refused credential) form the system's chain. `chain_seq` numbers a chain's rows from 1
without gaps; `prev_hash` is the `row_hash` of the row before (NULL for the first). A writer
takes the chain's transaction-scoped advisory lock before it reads the chain's last row, so
concurrent writers queue up per chain, and a unique index on (chain, chain_seq) refuses a fork.

The hash (`row_hash`), exactly: the lowercase hex SHA-256 of the UTF-8 bytes of

    json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

where `document` is an object of every other column of the row:

    id, tenant_id (text, or null), chain_seq, prev_hash, occurred_at, actor, action,
    resource_type, resource_id, before_hash, after_hash, details, request_id, trace_id,
    source_address, outcome

`occurred_at` is written in UTC with microseconds (`2026-12-01T09:30:00.123456+00:00`), as
stored (PostgreSQL keeps microseconds); `details` is the JSON as jsonb gives it back. Since
`prev_hash` is in the document, each row's hash covers the whole chain before it. An exported
line (`agentflow audit export`) is this document with `row_hash` added: drop `row_hash`, hash
the rest as above, and compare.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

from agentflow_grpc.model.audit_origin import current_origin
from agentflow_grpc.model.errors import InvalidArgumentError
from agentflow_grpc.model.records import AuditEntry
from agentflow_grpc.storage.database import Connection
from agentflow_grpc.storage.pagination import Page, continue_after, page_of, page_size

# The first key of the two-key advisory locks a writer takes per chain ("AUDT"); the
# one-bigint locks (the migrations' lock) are another key space.
CHAIN_LOCK_CLASS = 0x41554454
FILTER_LIMIT = 200  # characters of a text filter
# The rows a streaming read (verify, export) fetches from its cursor at a time.
STREAM_PREFETCH = 500


def state_hash(state: dict[str, Any] | None) -> str | None:
    if state is None:
        return None
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def document_of(entry: AuditEntry) -> dict[str, Any]:
    """The row's hashed document (see the module doc): every column but `row_hash`, as JSON."""
    return {
        "id": entry.id,
        "tenant_id": None if entry.tenant_id is None else str(entry.tenant_id),
        "chain_seq": entry.chain_seq,
        "prev_hash": entry.prev_hash,
        "occurred_at": entry.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "before_hash": entry.before_hash,
        "after_hash": entry.after_hash,
        "details": entry.details,
        "request_id": entry.request_id,
        "trace_id": entry.trace_id,
        "source_address": entry.source_address,
        "outcome": entry.outcome,
    }


def hash_document(document: Mapping[str, Any]) -> str:
    """`row_hash` of a row whose document (see `document_of`) is `document`."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain_lock_key(tenant_id: uuid.UUID | None) -> int:
    """The second key of a chain's advisory lock: the tenant id's first 32 bits, 0 for the
    system's chain (two tenants sharing it only queue up together)."""
    if tenant_id is None:
        return 0
    return int.from_bytes(tenant_id.bytes[:4], "big", signed=True)


async def record(
    connection: Connection,
    tenant_id: uuid.UUID | None,
    *,
    actor: str,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    details: dict[str, Any] | None = None,
    outcome: str = "ok",
) -> AuditEntry:
    """Append a row to the chain of `tenant_id` (None: the system's chain, system scope only),
    in the caller's transaction; its origin is the current call's (model/audit_origin.py).

    The chain stays locked until the transaction ends: keep what follows short.
    """
    origin = current_origin()
    await connection.execute(
        "SELECT pg_advisory_xact_lock($1, $2)", CHAIN_LOCK_CLASS, chain_lock_key(tenant_id)
    )
    # After the lock, in a statement of its own: under READ COMMITTED it sees the row the
    # previous holder committed. The time is the server's, so a chain's times never go back
    # across replicas; details come back as jsonb will return them (numbers normalised).
    head = await connection.fetchrow(
        """
        SELECT nextval('audit_log_id_seq') AS id, clock_timestamp() AS occurred_at,
               $2::jsonb AS details, last.chain_seq, last.row_hash
        FROM (SELECT) AS here
        LEFT JOIN LATERAL (
            SELECT chain_seq, row_hash FROM audit_log
            WHERE coalesce(tenant_id, '00000000-0000-0000-0000-000000000000')
                = coalesce($1::uuid, '00000000-0000-0000-0000-000000000000')
            ORDER BY coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'),
                     chain_seq DESC
            LIMIT 1
        ) AS last ON true
        """,
        tenant_id,
        details or {},
    )
    entry = AuditEntry(
        id=head["id"],
        tenant_id=tenant_id,
        occurred_at=head["occurred_at"],
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id),
        before_hash=state_hash(before),
        after_hash=state_hash(after),
        details=head["details"],
        request_id=origin.request_id,
        trace_id=origin.trace_id,
        source_address=origin.source_address,
        outcome=outcome,
        chain_seq=(head["chain_seq"] or 0) + 1,
        prev_hash=head["row_hash"],
    )
    entry = dataclasses.replace(entry, row_hash=hash_document(document_of(entry)))
    await connection.execute(
        """
        INSERT INTO audit_log (id, tenant_id, occurred_at, actor, action, resource_type,
                               resource_id, before_hash, after_hash, details, request_id,
                               trace_id, source_address, outcome, chain_seq, prev_hash,
                               row_hash)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
        """,
        entry.id,
        entry.tenant_id,
        entry.occurred_at,
        entry.actor,
        entry.action,
        entry.resource_type,
        entry.resource_id,
        entry.before_hash,
        entry.after_hash,
        entry.details,
        entry.request_id,
        entry.trace_id,
        entry.source_address,
        entry.outcome,
        entry.chain_seq,
        entry.prev_hash,
        entry.row_hash,
    )
    return entry


async def list_entries(
    connection: Connection,
    tenant_id: uuid.UUID,
    *,
    resource_type: str | None = None,
    resource_id: uuid.UUID | str | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries oldest first, optionally of one resource."""
    rows = await connection.fetch(
        """
        SELECT * FROM audit_log
        WHERE tenant_id = $1
          AND ($2::text IS NULL OR resource_type = $2)
          AND ($3::text IS NULL OR resource_id = $3)
        ORDER BY id
        LIMIT $4
        """,
        tenant_id,
        resource_type,
        None if resource_id is None else str(resource_id),
        limit,
    )
    return [entry_of(row) for row in rows]


async def list_events(
    connection: Connection,
    tenant_id: uuid.UUID | None,
    *,
    actor: str | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    size: int = 0,
    token: str = "",
) -> Page[AuditEntry]:
    """The tenant's rows (None: the system chain's, in system scope), newest first (by time,
    then id), filtered: each text filter matches exactly, `since` is inclusive and `until`
    exclusive. Errors name ListAuditEvents' fields."""
    for field, value in (
        ("actor", actor),
        ("action", action),
        ("resource_type", resource_type),
        ("resource_id", resource_id),
    ):
        if value is not None and (len(value) > FILTER_LIMIT or not value.isprintable()):
            raise InvalidArgumentError(
                f"{field} must be at most {FILTER_LIMIT} printable characters", field=field
            )
    if since is not None and until is not None and since >= until:
        raise InvalidArgumentError(
            "occur_time_before must be later than occur_time_after", field="occur_time_before"
        )
    limit = page_size(size)
    filters = {
        "actor": actor,
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "since": since,
        "until": until,
    }
    after = continue_after(token, filters, kinds=(datetime, int))
    rows = await connection.fetch(
        """
        SELECT * FROM audit_log
        WHERE (tenant_id = $1 OR ($1::uuid IS NULL AND tenant_id IS NULL))
          AND ($2::text IS NULL OR actor = $2)
          AND ($3::text IS NULL OR action = $3)
          AND ($4::text IS NULL OR resource_type = $4)
          AND ($5::text IS NULL OR resource_id = $5)
          AND ($6::timestamptz IS NULL OR occurred_at >= $6)
          AND ($7::timestamptz IS NULL OR occurred_at < $7)
          AND ($8::timestamptz IS NULL
               OR occurred_at < $8 OR (occurred_at = $8 AND id < $9::bigint))
        ORDER BY occurred_at DESC, id DESC
        LIMIT $10
        """,
        tenant_id,
        actor,
        action,
        resource_type,
        resource_id,
        since,
        until,
        after[0],
        after[1],
        limit + 1,
    )
    entries = [entry_of(row) for row in rows]
    return page_of(entries, limit, filters, lambda entry: [entry.occurred_at, entry.id])


async def chain_rows(
    connection: Connection,
    *,
    only_tenant: uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AsyncIterator[AuditEntry]:
    """Rows chain by chain (the system's first, then each tenant's), each chain in order,
    through a cursor: never the whole log in memory. `only_tenant`: that tenant's chain only.
    Needs a transaction (a cursor lives in one); in system scope for every chain."""
    query = """
        SELECT * FROM audit_log
        WHERE ($1::uuid IS NULL
               OR coalesce(tenant_id, '00000000-0000-0000-0000-000000000000') = $1)
          AND ($2::timestamptz IS NULL OR occurred_at >= $2)
          AND ($3::timestamptz IS NULL OR occurred_at < $3)
        ORDER BY coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'), chain_seq
    """
    async for row in connection.cursor(query, only_tenant, since, until, prefetch=STREAM_PREFETCH):
        yield entry_of(row)


def entry_of(row: Mapping[str, Any]) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        tenant_id=row["tenant_id"],
        occurred_at=row["occurred_at"],
        actor=row["actor"],
        action=row["action"],
        resource_type=row["resource_type"],
        resource_id=row["resource_id"],
        before_hash=row["before_hash"],
        after_hash=row["after_hash"],
        details=row["details"],
        request_id=row["request_id"],
        trace_id=row["trace_id"],
        source_address=row["source_address"],
        outcome=row["outcome"],
        chain_seq=row["chain_seq"],
        prev_hash=row["prev_hash"],
        row_hash=row["row_hash"],
    )

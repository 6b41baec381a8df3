"""The audit log: one append-only row per change, written in the change's own transaction.

Each entry says who (the actor), what (action, resource type and id), when, and the SHA-256 of
the resource's state before and after (canonical JSON of its public fields, never secrets). The
table takes INSERT and SELECT only, and a trigger refuses UPDATE and DELETE even to its owner.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from agentflow_grpc.model.records import AuditEntry
from agentflow_grpc.storage.database import Connection


def state_hash(state: dict[str, Any] | None) -> str | None:
    if state is None:
        return None
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def record(
    connection: Connection,
    tenant_id: uuid.UUID,
    *,
    actor: str,
    action: str,
    resource_type: str,
    resource_id: uuid.UUID | str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    details: dict[str, Any] | None = None,
) -> None:
    await connection.execute(
        """
        INSERT INTO audit_log (tenant_id, actor, action, resource_type, resource_id,
                               before_hash, after_hash, details)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        tenant_id,
        actor,
        action,
        resource_type,
        str(resource_id),
        state_hash(before),
        state_hash(after),
        details or {},
    )


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
    return [
        AuditEntry(
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
        )
        for row in rows
    ]

"""Sources: a public `config` in the clear, and `secrets` sealed with the keyring.

Secrets are write-only: records list their names, never their values. The one way back to the
values is `definitions()`, which opens them for a run. Sealing, opening and re-sealing under a
newer key are `source_secrets`' job.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from agentflow_grpc.model.errors import AlreadyExistsError, NotFoundError
from agentflow_grpc.model.records import StoredSource, check_etag
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.storage import audit
from agentflow_grpc.storage.crypto import Keyring, SealedSecrets
from agentflow_grpc.storage.database import Connection
from agentflow_grpc.storage.pagination import (
    Page,
    by_creation,
    continue_after,
    page_of,
    page_size,
)
from agentflow_grpc.storage.source_secrets import audit_state, open_sealed, seal

_LIVE = "deleted_at IS NULL"


async def create(
    connection: Connection,
    tenant_id: uuid.UUID,
    keyring: Keyring,
    *,
    name: str,
    type: str,
    description: str = "",
    config: Mapping[str, Any],
    secrets: Mapping[str, str],
    actor: str,
    request_id: str | None = None,
) -> StoredSource:
    """A new source; with a `request_id` seen before, the source it made."""
    source_id = uuid.uuid4()
    sealed = seal(keyring, tenant_id, source_id, secrets)
    try:
        row = await connection.fetchrow(
            """
            INSERT INTO sources (id, tenant_id, name, type, description, config, secret_names,
                                 secret_key_id, secret_blob, created_by, updated_by, request_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)
            ON CONFLICT (tenant_id, request_id) WHERE request_id IS NOT NULL DO NOTHING
            RETURNING *
            """,
            source_id,
            tenant_id,
            name,
            type,
            description,
            dict(config),
            sorted(secrets),
            sealed.key_id if sealed else None,
            sealed.blob if sealed else None,
            actor,
            request_id,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExistsError(f"a source named {name!r} already exists") from None
    if row is None:
        earlier = await connection.fetchrow(
            "SELECT * FROM sources WHERE tenant_id = $1 AND request_id = $2", tenant_id, request_id
        )
        return _source(earlier)
    source = _source(row)
    await _audit(connection, "source.create", None, row, actor)
    return source


async def get(
    connection: Connection, tenant_id: uuid.UUID, source_id: uuid.UUID, *, lock: bool = False
) -> StoredSource:
    return _source(await _row(connection, tenant_id, source_id, lock=lock))


async def find(connection: Connection, tenant_id: uuid.UUID, name: str) -> StoredSource:
    row = await connection.fetchrow(
        f"SELECT * FROM sources WHERE tenant_id = $1 AND name = $2 AND {_LIVE}", tenant_id, name
    )
    if row is None:
        raise NotFoundError(f"no source named {name!r}")
    return _source(row)


async def list_sources(
    connection: Connection, tenant_id: uuid.UUID, *, size: int = 0, token: str = ""
) -> Page[StoredSource]:
    limit = page_size(size)
    filters: dict[str, Any] = {}
    after = continue_after(token, filters, kinds=(datetime, uuid.UUID))
    rows = await connection.fetch(
        f"""
        SELECT * FROM sources
        WHERE tenant_id = $1 AND {_LIVE}
          AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT $4
        """,
        tenant_id,
        after[0],
        after[1],
        limit + 1,
    )
    return page_of([_source(row) for row in rows], limit, filters, by_creation)


async def update(
    connection: Connection,
    tenant_id: uuid.UUID,
    source_id: uuid.UUID,
    keyring: Keyring,
    *,
    etag: str | None,
    actor: str,
    name: str | None = None,
    description: str | None = None,
    config: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> StoredSource:
    """Change the fields given (None keeps a field); `secrets` replaces all of them."""
    before = await _row(connection, tenant_id, source_id, lock=True)
    check_etag(etag, current=before["revision"], resource=f"source {source_id}")
    sealed: SealedSecrets | None = None
    if secrets is not None:
        sealed = seal(keyring, tenant_id, source_id, secrets)
    try:
        row = await connection.fetchrow(
            """
            UPDATE sources SET
                name = coalesce($3, name),
                description = coalesce($4, description),
                config = coalesce($5, config),
                secret_names = CASE WHEN $6 THEN $7 ELSE secret_names END,
                secret_key_id = CASE WHEN $6 THEN $8 ELSE secret_key_id END,
                secret_blob = CASE WHEN $6 THEN $9 ELSE secret_blob END,
                revision = revision + 1, updated_at = now(), updated_by = $10
            WHERE tenant_id = $1 AND id = $2
            RETURNING *
            """,
            tenant_id,
            source_id,
            name,
            description,
            None if config is None else dict(config),
            secrets is not None,
            sorted(secrets or {}),
            sealed.key_id if sealed else None,
            sealed.blob if sealed else None,
            actor,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExistsError(f"a source named {name!r} already exists") from None
    await _audit(connection, "source.update", before, row, actor)
    return _source(row)


async def delete(
    connection: Connection,
    tenant_id: uuid.UUID,
    source_id: uuid.UUID,
    *,
    etag: str | None,
    actor: str,
) -> StoredSource:
    """Soft delete; the sealed secrets are erased with it, and the name is free again."""
    before = await _row(connection, tenant_id, source_id, lock=True)
    check_etag(etag, current=before["revision"], resource=f"source {source_id}")
    row = await connection.fetchrow(
        """
        UPDATE sources SET deleted_at = now(), secret_key_id = NULL, secret_blob = NULL,
                           revision = revision + 1, updated_at = now(), updated_by = $3
        WHERE tenant_id = $1 AND id = $2
        RETURNING *
        """,
        tenant_id,
        source_id,
        actor,
    )
    await _audit(connection, "source.delete", before, row, actor)
    return _source(row)


async def types_by_name(connection: Connection, tenant_id: uuid.UUID) -> dict[str, str]:
    """Name (and id) → type of every live source: what the validator checks references with."""
    rows = await connection.fetch(
        f"SELECT id, name, type FROM sources WHERE tenant_id = $1 AND {_LIVE}", tenant_id
    )
    types = {row["name"]: row["type"] for row in rows}
    types.update({str(row["id"]): row["type"] for row in rows})
    return types


async def stamp(connection: Connection, tenant_id: uuid.UUID) -> tuple[tuple[str, int], ...]:
    """(id, revision) of every live source of the tenant: it changes whenever one does."""
    rows = await connection.fetch(
        f"SELECT id, revision FROM sources WHERE tenant_id = $1 AND {_LIVE} ORDER BY id",
        tenant_id,
    )
    return tuple((str(row["id"]), row["revision"]) for row in rows)


async def definitions(
    connection: Connection, tenant_id: uuid.UUID, keyring: Keyring
) -> list[SourceDefinition]:
    """Every live source of the tenant, secrets opened: what a run needs."""
    rows = await connection.fetch(
        f"SELECT * FROM sources WHERE tenant_id = $1 AND {_LIVE} ORDER BY name", tenant_id
    )
    return [_definition(keyring, row) for row in rows]


async def definition(
    connection: Connection, tenant_id: uuid.UUID, source_id: uuid.UUID, keyring: Keyring
) -> SourceDefinition:
    """One live source, secrets opened (to test it)."""
    return _definition(keyring, await _row(connection, tenant_id, source_id, lock=False))


def _definition(keyring: Keyring, row: Any) -> SourceDefinition:
    return SourceDefinition(
        id=str(row["id"]),
        name=row["name"],
        type=row["type"],
        config=row["config"],
        secrets=open_sealed(keyring, row),
    )


async def _row(
    connection: Connection, tenant_id: uuid.UUID, source_id: uuid.UUID, *, lock: bool
) -> Any:
    row = await connection.fetchrow(
        f"SELECT * FROM sources WHERE tenant_id = $1 AND id = $2 AND {_LIVE}"
        + (" FOR UPDATE" if lock else ""),
        tenant_id,
        source_id,
    )
    if row is None:
        raise NotFoundError(f"source {source_id} not found")
    return row


async def _audit(connection: Connection, action: str, before: Any, after: Any, actor: str) -> None:
    await audit.record(
        connection,
        after["tenant_id"],
        actor=actor,
        action=action,
        resource_type="source",
        resource_id=after["id"],
        before=None if before is None else audit_state(before),
        after=audit_state(after),
    )


def _source(row: Any) -> StoredSource:
    return StoredSource(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        type=row["type"],
        description=row["description"],
        config=row["config"],
        secret_names=tuple(row["secret_names"]),
        revision=row["revision"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deleted_at=row["deleted_at"],
        created_by=row["created_by"],
        updated_by=row["updated_by"],
    )

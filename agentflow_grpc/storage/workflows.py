"""Workflows and their immutable, numbered versions.

Creating a workflow stores version 1; every update that changes the spec stores the next
version and moves the workflow to it. Versions are never changed (the table takes INSERT and
SELECT only, and a trigger refuses changes). An update or delete may carry the etag the caller
last saw: if the workflow has changed since, it fails with EtagMismatchError. Deletes are soft.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from agentflow_grpc.model.errors import NotFoundError
from agentflow_grpc.model.records import Workflow, WorkflowVersion, check_etag
from agentflow_grpc.storage import audit
from agentflow_grpc.storage.database import Connection
from agentflow_grpc.storage.pagination import (
    Page,
    by_creation,
    continue_after,
    page_of,
    page_size,
)

_SELECT = """
    SELECT w.*, v.spec, v.spec_hash
    FROM workflows w
    JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.current_version
"""


async def create(
    connection: Connection,
    tenant_id: uuid.UUID,
    *,
    name: str,
    spec: dict[str, Any],
    spec_hash: str,
    actor: str,
    request_id: str | None = None,
) -> Workflow:
    """Version 1 of a new workflow; with a `request_id` seen before, the workflow it made."""
    inserted = await connection.fetchval(
        """
        INSERT INTO workflows (id, tenant_id, name, current_version, created_by, updated_by,
                               request_id)
        VALUES ($1, $2, $3, 1, $4, $4, $5)
        ON CONFLICT (tenant_id, request_id) WHERE request_id IS NOT NULL DO NOTHING
        RETURNING id
        """,
        uuid.uuid4(),
        tenant_id,
        name,
        actor,
        request_id,
    )
    if inserted is None:
        earlier = await connection.fetchval(
            "SELECT id FROM workflows WHERE tenant_id = $1 AND request_id = $2",
            tenant_id,
            request_id,
        )
        return await get(connection, tenant_id, earlier, include_deleted=True)
    await _insert_version(connection, tenant_id, inserted, 1, spec, spec_hash, actor)
    workflow = await get(connection, tenant_id, inserted)
    await _audit(connection, workflow, "workflow.create", before=None, actor=actor)
    return workflow


async def get(
    connection: Connection,
    tenant_id: uuid.UUID,
    workflow_id: uuid.UUID,
    *,
    include_deleted: bool = False,
    lock: bool = False,
) -> Workflow:
    if lock:
        # Lock the workflow row on its own first: a transaction that waited for the lock must
        # then read the version the winner committed, which a locking join would not re-read.
        await connection.execute(
            "SELECT FROM workflows WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            tenant_id,
            workflow_id,
        )
    row = await connection.fetchrow(
        f"{_SELECT} WHERE w.tenant_id = $1 AND w.id = $2", tenant_id, workflow_id
    )
    if row is None or (row["deleted_at"] is not None and not include_deleted):
        raise NotFoundError(f"workflow {workflow_id} not found")
    return _workflow(row)


async def list_workflows(
    connection: Connection,
    tenant_id: uuid.UUID,
    *,
    size: int = 0,
    token: str = "",
    name: str | None = None,
    show_deleted: bool = False,
) -> Page[Workflow]:
    """Newest first; `name` keeps only workflows whose spec has that name."""
    limit = page_size(size)
    filters = {"name": name, "show_deleted": show_deleted}
    after = continue_after(token, filters, kinds=(datetime, uuid.UUID))
    rows = await connection.fetch(
        f"""{_SELECT}
        WHERE w.tenant_id = $1
          AND ($2::text IS NULL OR w.name = $2)
          AND ($3 OR w.deleted_at IS NULL)
          AND ($4::timestamptz IS NULL OR (w.created_at, w.id) < ($4, $5::uuid))
        ORDER BY w.created_at DESC, w.id DESC
        LIMIT $6
        """,
        tenant_id,
        name,
        show_deleted,
        after[0],
        after[1],
        limit + 1,
    )
    return page_of([_workflow(row) for row in rows], limit, filters, by_creation)


async def update(
    connection: Connection,
    tenant_id: uuid.UUID,
    workflow_id: uuid.UUID,
    *,
    name: str,
    spec: dict[str, Any],
    spec_hash: str,
    etag: str | None,
    actor: str,
) -> Workflow:
    """Store `spec` as the next version. The same spec again changes nothing."""
    current = await get(connection, tenant_id, workflow_id, lock=True)
    check_etag(etag, current=current.revision, resource=f"workflow {workflow_id}")
    if current.spec_hash == spec_hash:
        return current
    version = current.version + 1
    await _insert_version(connection, tenant_id, workflow_id, version, spec, spec_hash, actor)
    await connection.execute(
        """
        UPDATE workflows
        SET name = $3, current_version = $4, revision = revision + 1,
            updated_at = now(), updated_by = $5
        WHERE tenant_id = $1 AND id = $2
        """,
        tenant_id,
        workflow_id,
        name,
        version,
        actor,
    )
    updated = await get(connection, tenant_id, workflow_id)
    await _audit(connection, updated, "workflow.update", before=current, actor=actor)
    return updated


async def delete(
    connection: Connection,
    tenant_id: uuid.UUID,
    workflow_id: uuid.UUID,
    *,
    etag: str | None,
    actor: str,
) -> Workflow:
    """Soft delete: hidden from get and list, its versions and executions kept."""
    current = await get(connection, tenant_id, workflow_id, lock=True)
    check_etag(etag, current=current.revision, resource=f"workflow {workflow_id}")
    await connection.execute(
        """
        UPDATE workflows SET deleted_at = now(), revision = revision + 1, updated_at = now(),
                             updated_by = $3
        WHERE tenant_id = $1 AND id = $2
        """,
        tenant_id,
        workflow_id,
        actor,
    )
    deleted = await get(connection, tenant_id, workflow_id, include_deleted=True)
    await _audit(connection, deleted, "workflow.delete", before=current, actor=actor)
    return deleted


async def get_version(
    connection: Connection, tenant_id: uuid.UUID, workflow_id: uuid.UUID, version: int
) -> WorkflowVersion:
    """A version of a workflow, deleted or not (executions refer to them)."""
    row = await connection.fetchrow(
        """
        SELECT * FROM workflow_versions
        WHERE tenant_id = $1 AND workflow_id = $2 AND version = $3
        """,
        tenant_id,
        workflow_id,
        version,
    )
    if row is None:
        raise NotFoundError(f"workflow {workflow_id} has no version {version}")
    return _version(row)


async def list_versions(
    connection: Connection,
    tenant_id: uuid.UUID,
    workflow_id: uuid.UUID,
    *,
    size: int = 0,
    token: str = "",
) -> Page[WorkflowVersion]:
    """Newest version first."""
    await get(connection, tenant_id, workflow_id)  # NotFound for unknown or deleted workflows
    limit = page_size(size)
    filters = {"workflow": str(workflow_id)}
    (below,) = continue_after(token, filters, kinds=(int,))
    rows = await connection.fetch(
        """
        SELECT * FROM workflow_versions
        WHERE tenant_id = $1 AND workflow_id = $2 AND ($3::integer IS NULL OR version < $3)
        ORDER BY version DESC
        LIMIT $4
        """,
        tenant_id,
        workflow_id,
        below,
        limit + 1,
    )
    return page_of([_version(row) for row in rows], limit, filters, lambda v: [v.version])


async def _insert_version(
    connection: Connection,
    tenant_id: uuid.UUID,
    workflow_id: uuid.UUID,
    version: int,
    spec: dict[str, Any],
    spec_hash: str,
    actor: str,
) -> None:
    await connection.execute(
        """
        INSERT INTO workflow_versions (tenant_id, workflow_id, version, spec, spec_hash, created_by)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        tenant_id,
        workflow_id,
        version,
        spec,
        spec_hash,
        actor,
    )


async def _audit(
    connection: Connection, workflow: Workflow, action: str, *, before: Workflow | None, actor: str
) -> None:
    await audit.record(
        connection,
        workflow.tenant_id,
        actor=actor,
        action=action,
        resource_type="workflow",
        resource_id=workflow.id,
        before=None if before is None else _state(before),
        after=_state(workflow),
        details={"version": workflow.version},
    )


def _state(workflow: Workflow) -> dict[str, Any]:
    return {
        "name": workflow.name,
        "version": workflow.version,
        "spec_hash": workflow.spec_hash,
        "deleted": workflow.deleted_at is not None,
    }


def _workflow(row: Any) -> Workflow:
    return Workflow(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        version=row["current_version"],
        spec=row["spec"],
        spec_hash=row["spec_hash"],
        revision=row["revision"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deleted_at=row["deleted_at"],
        created_by=row["created_by"],
        updated_by=row["updated_by"],
    )


def _version(row: Any) -> WorkflowVersion:
    return WorkflowVersion(
        workflow_id=row["workflow_id"],
        version=row["version"],
        spec=row["spec"],
        spec_hash=row["spec_hash"],
        created_at=row["created_at"],
        created_by=row["created_by"],
    )

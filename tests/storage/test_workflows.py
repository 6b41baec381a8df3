"""Workflows: numbered immutable versions, etags, soft delete, listing with keyset pages."""

from __future__ import annotations

import asyncpg
import pytest
from support.storage import ACTOR

from agentflow_grpc.model.errors import EtagMismatchError, InvalidArgumentError, NotFoundError
from agentflow_grpc.model.records import Tenant
from agentflow_grpc.storage import audit, workflows
from agentflow_grpc.storage.database import Database


def spec(name: str, marker: int = 0) -> dict[str, object]:
    return {"api_version": "agentflow/v1", "name": name, "marker": marker}


async def test_create_stores_version_one(database: Database, tenant_a: Tenant) -> None:
    async with database.tenant(tenant_a.id) as connection:
        created = await workflows.create(
            connection, tenant_a.id, name="triage", spec=spec("triage"), spec_hash="h1", actor=ACTOR
        )
        got = await workflows.get(connection, tenant_a.id, created.id)
        version = await workflows.get_version(connection, tenant_a.id, created.id, 1)
    assert got == created
    assert (got.name, got.version, got.spec, got.spec_hash) == ("triage", 1, spec("triage"), "h1")
    assert (got.created_by, got.updated_by, got.deleted_at) == (ACTOR, ACTOR, None)
    assert (version.version, version.spec, version.spec_hash) == (1, spec("triage"), "h1")


async def test_each_update_is_a_new_version_and_old_ones_stay(
    database: Database, tenant_a: Tenant
) -> None:
    async with database.tenant(tenant_a.id) as connection:
        workflow = await workflows.create(
            connection, tenant_a.id, name="w", spec=spec("w", 1), spec_hash="h1", actor=ACTOR
        )
        for marker in (2, 3):
            workflow = await workflows.update(
                connection,
                tenant_a.id,
                workflow.id,
                name="w",
                spec=spec("w", marker),
                spec_hash=f"h{marker}",
                etag=workflow.etag,
                actor="api_key:someone",
            )
        versions = await workflows.list_versions(connection, tenant_a.id, workflow.id)
        first = await workflows.get_version(connection, tenant_a.id, workflow.id, 1)
    assert (workflow.version, workflow.spec, workflow.updated_by) == (
        3,
        spec("w", 3),
        "api_key:someone",
    )
    assert [v.version for v in versions.items] == [3, 2, 1]
    assert first.spec == spec("w", 1)


async def test_an_unchanged_spec_makes_no_version(database: Database, tenant_a: Tenant) -> None:
    async with database.tenant(tenant_a.id) as connection:
        workflow = await workflows.create(
            connection, tenant_a.id, name="w", spec=spec("w"), spec_hash="h1", actor=ACTOR
        )
        again = await workflows.update(
            connection, tenant_a.id, workflow.id, name="w", spec=spec("w"), spec_hash="h1",
            etag=workflow.etag, actor=ACTOR,
        )  # fmt: skip
    assert (again.version, again.etag) == (1, workflow.etag)


async def test_a_stale_etag_is_refused(database: Database, tenant_a: Tenant) -> None:
    async with database.tenant(tenant_a.id) as connection:
        workflow = await workflows.create(
            connection, tenant_a.id, name="w", spec=spec("w"), spec_hash="h1", actor=ACTOR
        )
        await workflows.update(
            connection, tenant_a.id, workflow.id, name="w", spec=spec("w", 2), spec_hash="h2",
            etag=workflow.etag, actor=ACTOR,
        )  # fmt: skip
        with pytest.raises(EtagMismatchError, match="has changed since"):
            await workflows.update(
                connection, tenant_a.id, workflow.id, name="w", spec=spec("w", 3), spec_hash="h3",
                etag=workflow.etag, actor=ACTOR,
            )  # fmt: skip
        with pytest.raises(EtagMismatchError):
            await workflows.delete(
                connection, tenant_a.id, workflow.id, etag=workflow.etag, actor=ACTOR
            )
        with pytest.raises(InvalidArgumentError, match="not an etag") as bad:
            await workflows.delete(connection, tenant_a.id, workflow.id, etag="v7", actor=ACTOR)
        assert bad.value.field == "etag"
        # No etag: the change applies to whatever is current.
        latest = await workflows.update(
            connection, tenant_a.id, workflow.id, name="w", spec=spec("w", 4), spec_hash="h4",
            etag=None, actor=ACTOR,
        )  # fmt: skip
    assert latest.version == 3


async def test_delete_is_soft(database: Database, tenant_a: Tenant) -> None:
    async with database.tenant(tenant_a.id) as connection:
        workflow = await workflows.create(
            connection, tenant_a.id, name="w", spec=spec("w"), spec_hash="h1", actor=ACTOR
        )
        deleted = await workflows.delete(
            connection, tenant_a.id, workflow.id, etag=workflow.etag, actor=ACTOR
        )
        assert deleted.deleted_at is not None
        assert deleted.etag != workflow.etag
        with pytest.raises(NotFoundError):
            await workflows.get(connection, tenant_a.id, workflow.id)
        with pytest.raises(NotFoundError):
            await workflows.update(
                connection, tenant_a.id, workflow.id, name="w", spec=spec("w", 2), spec_hash="h2",
                etag=None, actor=ACTOR,
            )  # fmt: skip
        with pytest.raises(NotFoundError):
            await workflows.delete(connection, tenant_a.id, workflow.id, etag=None, actor=ACTOR)
        assert (await workflows.list_workflows(connection, tenant_a.id)).items == []
        shown = await workflows.list_workflows(connection, tenant_a.id, show_deleted=True)
        assert [w.id for w in shown.items] == [workflow.id]
        # Its versions stay readable: executions refer to them.
        assert (
            await workflows.get_version(connection, tenant_a.id, workflow.id, 1)
        ).spec_hash == "h1"


async def test_versions_cannot_be_changed(
    database: Database, tenant_a: Tenant, owner: asyncpg.Connection
) -> None:
    async with database.tenant(tenant_a.id) as connection:
        workflow = await workflows.create(
            connection, tenant_a.id, name="w", spec=spec("w"), spec_hash="h1", actor=ACTOR
        )
    async with database.tenant(tenant_a.id) as connection:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("UPDATE workflow_versions SET spec_hash = 'forged'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="never changed"):
        await owner.execute("UPDATE workflow_versions SET spec_hash = 'forged'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="never changed"):
        await owner.execute("DELETE FROM workflow_versions WHERE workflow_id = $1", workflow.id)


async def test_a_workflow_must_point_at_a_stored_version(
    database: Database, tenant_a: Tenant
) -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        async with database.tenant(tenant_a.id) as connection:
            await connection.execute(
                "INSERT INTO workflows (tenant_id, name, current_version, created_by, updated_by)"
                " VALUES ($1, 'orphan', 1, 'a', 'a')",
                tenant_a.id,
            )


async def test_listing_pages_through_everything_once(database: Database, tenant_a: Tenant) -> None:
    async with database.tenant(tenant_a.id) as connection:
        ids = []
        for index in range(7):
            workflow = await workflows.create(
                connection,
                tenant_a.id,
                name="even" if index % 2 == 0 else "odd",
                spec=spec("x", index),
                spec_hash=f"h{index}",
                actor=ACTOR,
            )
            ids.append(workflow.id)
    seen = []
    token = ""
    pages = 0
    while True:
        async with database.tenant(tenant_a.id) as connection:
            page = await workflows.list_workflows(connection, tenant_a.id, size=3, token=token)
        pages += 1
        seen += [w.id for w in page.items]
        if not (token := page.next_page_token):
            break
    assert pages == 3
    assert sorted(seen) == sorted(ids)
    assert len(seen) == 7
    async with database.tenant(tenant_a.id) as connection:
        evens = await workflows.list_workflows(connection, tenant_a.id, name="even", size=2)
        assert {w.name for w in evens.items} == {"even"}
        with pytest.raises(InvalidArgumentError, match="other filters") as other:
            await workflows.list_workflows(connection, tenant_a.id, token=evens.next_page_token)
        assert other.value.field == "page_token"
        with pytest.raises(InvalidArgumentError, match="not a token"):
            await workflows.list_workflows(connection, tenant_a.id, token="garbage!")
        with pytest.raises(InvalidArgumentError, match="page_size"):
            await workflows.list_workflows(connection, tenant_a.id, size=-1)


async def test_every_change_is_audited(database: Database, tenant_a: Tenant) -> None:
    async with database.tenant(tenant_a.id) as connection:
        workflow = await workflows.create(
            connection, tenant_a.id, name="w", spec=spec("w"), spec_hash="h1", actor="api_key:1"
        )
        updated = await workflows.update(
            connection, tenant_a.id, workflow.id, name="w", spec=spec("w", 2), spec_hash="h2",
            etag=None, actor="api_key:2",
        )  # fmt: skip
        await workflows.delete(connection, tenant_a.id, workflow.id, etag=None, actor="api_key:3")
        entries = await audit.list_entries(
            connection, tenant_a.id, resource_type="workflow", resource_id=workflow.id
        )
    assert [(e.action, e.actor) for e in entries] == [
        ("workflow.create", "api_key:1"),
        ("workflow.update", "api_key:2"),
        ("workflow.delete", "api_key:3"),
    ]
    create, update, delete = entries
    assert create.before_hash is None
    assert create.after_hash is not None
    assert update.before_hash == create.after_hash  # the chain of states is unbroken
    assert delete.before_hash == update.after_hash
    assert update.details == {"version": updated.version}

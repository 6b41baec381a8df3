"""AuditService on the real PostgreSQL: rows recorded on their own (the system's chain too),
the list, `verify` finding what an attacker with the owner's rights did to the table, and
`export`'s JSON lines, every one of them re-verifiable.

The attacker is `owner` (a superuser connection): it disables the append-only trigger, changes
or deletes a row, and enables the trigger again, as someone holding the database would.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from agentflow_grpc.model.audit_origin import AuditOrigin, set_origin
from agentflow_grpc.model.records import Tenant
from agentflow_grpc.services.audit import AuditService, BreakReason, ChainReport, VerifyReport
from agentflow_grpc.storage import audit
from agentflow_grpc.storage.database import Database


@pytest.fixture
def service(database: Database) -> AuditService:
    return AuditService(database)


@contextmanager
def origin(request_id: str) -> Iterator[None]:
    set_origin(AuditOrigin(request_id, "0af7651916cd43dd8448eb211c80319c", "ipv6:[::1]:40000"))
    try:
        yield
    finally:
        set_origin(None)


async def fill(service: AuditService, tenant_a: Tenant, tenant_b: Tenant) -> None:
    """Rows in three chains: A (besides tenant.create) 4, B 2, the system's 2."""
    for index in range(4):
        with origin(f"req-a{index}"):
            await service.record(
                tenant_a.id,
                actor="api_key:1",
                action="WorkflowService.UpdateWorkflow",
                resource_type="workflow",
                resource_id=f"w{index}",
                outcome="failed_precondition",
                details={"index": index, "reason": "etag mismatch"},
            )
    await service.record(
        tenant_b.id,
        actor="oidc:https://idp#bob",
        action="AdminService.ListApiKeys",
        resource_type="method",
        resource_id="AdminService.ListApiKeys",
        outcome="permission_denied",
    )
    for address in ("203.0.113.7", "203.0.113.8"):
        await service.record(
            None,
            actor="anonymous",
            action="auth.refused",
            resource_type="credential",
            resource_id="api_key:af_12345678",
            outcome="unauthenticated",
            details={"forwarded_for": address},
        )


def chain_of(report: VerifyReport, tenant_id: uuid.UUID | None) -> ChainReport:
    (chain,) = [chain for chain in report.chains if chain.tenant_id == tenant_id]
    return chain


async def tamper(owner: asyncpg.Connection, statement: str, *arguments: Any) -> None:
    await owner.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    try:
        await owner.execute(statement, *arguments)
    finally:
        await owner.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")


async def row_of(owner: asyncpg.Connection, tenant_id: uuid.UUID, chain_seq: int) -> Any:
    return await owner.fetchrow(
        "SELECT id, row_hash FROM audit_log WHERE tenant_id = $1 AND chain_seq = $2",
        tenant_id,
        chain_seq,
    )


# --- record ---


async def test_record_writes_a_row_in_its_own_transaction_to_the_right_chain(
    service: AuditService, database: Database, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    await fill(service, tenant_a, tenant_b)

    events, _ = await service.list_events(tenant_a.id, action="WorkflowService.UpdateWorkflow")
    assert [event.resource_id for event in events] == ["w3", "w2", "w1", "w0"]
    newest = events[0]
    assert newest.outcome == "failed_precondition"
    assert newest.details == {"index": 3, "reason": "etag mismatch"}
    assert (newest.request_id, newest.trace_id, newest.source_address) == (
        "req-a3",
        "0af7651916cd43dd8448eb211c80319c",
        "ipv6:[::1]:40000",
    )
    assert newest.chain_seq == 5
    async with database.system() as connection:
        system = [
            audit.entry_of(row)
            for row in await connection.fetch(
                "SELECT * FROM audit_log WHERE tenant_id IS NULL ORDER BY chain_seq"
            )
        ]
    assert [(entry.chain_seq, entry.outcome) for entry in system] == [
        (1, "unauthenticated"),
        (2, "unauthenticated"),
    ]
    assert system[1].prev_hash == system[0].row_hash


async def test_list_events_pages_with_an_opaque_token(
    service: AuditService, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    await fill(service, tenant_a, tenant_b)

    first, token = await service.list_events(tenant_a.id, page_size=3)
    second, last = await service.list_events(tenant_a.id, page_size=3, page_token=token)

    assert [event.chain_seq for event in first + second] == [5, 4, 3, 2, 1]
    assert token
    assert last == ""
    assert str(first[-1].id) not in token  # opaque: not a readable id
    everything, _ = await service.list_events(tenant_a.id)
    assert len(everything) == 5  # the default page holds them all


# --- verify ---


async def test_an_untouched_log_verifies_with_every_chain_and_its_head(
    service: AuditService, database: Database, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    await fill(service, tenant_a, tenant_b)

    report = await service.verify()

    assert report.ok
    assert report.rows == 5 + 2 + 2
    assert report.chains[0].tenant_id is None  # the system's first
    assert {chain.tenant_id for chain in report.chains} == {None, tenant_a.id, tenant_b.id}
    async with database.system() as connection:
        for chain in report.chains:
            head = await connection.fetchrow(
                "SELECT chain_seq, row_hash FROM audit_log"
                " WHERE tenant_id IS NOT DISTINCT FROM $1 ORDER BY chain_seq DESC LIMIT 1",
                chain.tenant_id,
            )
            assert (chain.head_seq, chain.head_hash) == (head["chain_seq"], head["row_hash"])
            assert chain.rows == head["chain_seq"]
    only_a = await service.verify(only_tenant=tenant_a.id)
    assert [(chain.tenant_id, chain.rows) for chain in only_a.chains] == [(tenant_a.id, 5)]
    assert only_a.ok


async def test_verify_names_a_row_whose_details_were_changed(
    service: AuditService, owner: asyncpg.Connection, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    await fill(service, tenant_a, tenant_b)
    target = await row_of(owner, tenant_a.id, 3)

    await tamper(
        owner, "UPDATE audit_log SET details = '{\"index\": 99}' WHERE id = $1", target["id"]
    )
    report = await service.verify()

    assert not report.ok
    broken = chain_of(report, tenant_a.id).first_break
    assert broken is not None
    assert (broken.row_id, broken.chain_seq, broken.reason) == (
        target["id"],
        3,
        BreakReason.CHANGED_ROW,
    )
    assert target["row_hash"] in broken.explanation
    # The later rows still link to the stored hash: only the changed row is named.
    assert chain_of(report, tenant_a.id).rows == 5
    assert chain_of(report, tenant_b.id).first_break is None
    assert chain_of(report, None).first_break is None
    assert not (await service.verify(only_tenant=tenant_a.id)).ok
    assert (await service.verify(only_tenant=tenant_b.id)).ok


async def test_verify_names_the_row_after_a_deleted_one(
    service: AuditService, owner: asyncpg.Connection, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    await fill(service, tenant_a, tenant_b)
    deleted = await row_of(owner, tenant_a.id, 2)
    follower = await row_of(owner, tenant_a.id, 3)

    await tamper(owner, "DELETE FROM audit_log WHERE id = $1", deleted["id"])
    report = await service.verify(only_tenant=tenant_a.id)

    broken = report.chains[0].first_break
    assert broken is not None
    assert (broken.row_id, broken.chain_seq, broken.reason) == (
        follower["id"],
        3,
        BreakReason.MISSING_ROW,
    )
    assert "2 missing" in broken.explanation
    assert report.chains[0].rows == 4


async def test_verify_finds_a_changed_row_whose_hash_was_recomputed(
    service: AuditService,
    database: Database,
    owner: asyncpg.Connection,
    tenant_a: Tenant,
    tenant_b: Tenant,
) -> None:
    """An attacker who knows the hash rewrites a row and its row_hash: the next row's link
    breaks."""
    await fill(service, tenant_a, tenant_b)
    target = await row_of(owner, tenant_a.id, 2)
    follower = await row_of(owner, tenant_a.id, 3)
    async with database.system() as connection:
        stored = audit.entry_of(
            await connection.fetchrow("SELECT * FROM audit_log WHERE id = $1", target["id"])
        )
    forged = dataclasses.replace(stored, actor="someone-else")
    forged_hash = audit.hash_document(audit.document_of(forged))

    await tamper(
        owner,
        "UPDATE audit_log SET actor = 'someone-else', row_hash = $2 WHERE id = $1",
        target["id"],
        forged_hash,
    )
    report = await service.verify(only_tenant=tenant_a.id)

    broken = report.chains[0].first_break
    assert broken is not None
    assert (broken.row_id, broken.reason) == (follower["id"], BreakReason.BROKEN_LINK)
    assert forged_hash in broken.explanation


# --- export ---


async def exported(service: AuditService, **arguments: Any) -> tuple[list[str], int]:
    lines: list[str] = []
    count = await service.export(lines.append, **arguments)
    return lines, count


async def test_export_writes_every_row_as_a_json_line_that_verifies_on_its_own(
    service: AuditService, database: Database, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    await fill(service, tenant_a, tenant_b)

    lines, count = await exported(service)

    assert count == len(lines) == 9
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    documents = [json.loads(line) for line in lines]
    async with database.system() as connection:
        stored = {
            row["id"]: audit.entry_of(row)
            for row in await connection.fetch("SELECT * FROM audit_log")
        }
    assert {document["id"] for document in documents} == set(stored)
    heads: dict[str | None, str | None] = {}
    for document in documents:
        row_hash = document.pop("row_hash")
        # Re-verified from the line alone: its hash, and its link to the line before.
        assert audit.hash_document(document) == row_hash
        assert document["prev_hash"] == heads.get(document["tenant_id"])
        heads[document["tenant_id"]] = row_hash
        entry = stored[document["id"]]
        assert document == audit.document_of(entry)
        assert datetime.fromisoformat(document["occurred_at"]) == entry.occurred_at
    assert set(heads) == {None, str(tenant_a.id), str(tenant_b.id)}
    assert documents[0]["tenant_id"] is None


async def test_export_of_one_tenant_and_a_time_range(
    service: AuditService, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    await fill(service, tenant_a, tenant_b)
    events, _ = await service.list_events(tenant_a.id)
    since, until = events[3].occurred_at, events[1].occurred_at  # chain_seq 2 and 4

    lines, count = await exported(service, only_tenant=tenant_a.id, since=since, until=until)

    assert count == 2
    assert [json.loads(line)["chain_seq"] for line in lines] == [2, 3]
    everything, _ = await exported(service, only_tenant=tenant_a.id)
    assert len(everything) == 5
    none, _ = await exported(service, since=datetime.now(UTC))
    assert none == []

"""The audit log read, written on its own, checked and exported (docs/storage.md).

Changes write their rows in their own transactions (storage/audit.py); `record` is for what
changes nothing (a refused credential, a refused call, a failed change), in a transaction of its
own. `verify` walks chains, recomputing every hash: it finds a row changed, removed or
re-linked since it was written; `export` writes JSON lines for a SIEM, each one re-verifiable.

Removing a chain's newest rows leaves a shorter chain that still verifies: compare the head
(`chain_seq` and hash) `verify` reports with one kept elsewhere (an earlier report, an export).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from agentflow_grpc.model.records import AuditEntry, Principal, SignIn
from agentflow_grpc.storage import audit as store
from agentflow_grpc.storage.database import Connection, Database
from agentflow_grpc.storage.pagination import DEFAULT_PAGE_SIZE


class BreakReason(StrEnum):
    CHANGED_ROW = "changed_row"  # its fields no longer hash to its `row_hash`
    MISSING_ROW = "missing_row"  # its `chain_seq` skips: rows before it were removed
    BROKEN_LINK = "broken_link"  # its `prev_hash` is not the `row_hash` of the row before


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first row of a chain that does not hold, and why."""

    row_id: int
    chain_seq: int
    reason: BreakReason
    explanation: str


@dataclass(slots=True)
class ChainReport:
    """One chain as walked so far: its rows, its head (last row's seq and hash), and its first
    break, if any (the walk goes on to the head after one)."""

    tenant_id: uuid.UUID | None  # None: the system's chain
    rows: int = 0
    head_seq: int = 0
    head_hash: str | None = None
    first_break: ChainBreak | None = None

    def check(self, entry: AuditEntry) -> None:
        """Take the chain's next row: its hash recomputed, its place and its link checked."""
        problem = _problem(entry, self.head_seq, self.head_hash)
        if problem is not None and self.first_break is None:
            self.first_break = ChainBreak(entry.id, entry.chain_seq, *problem)
        self.rows += 1
        self.head_seq = entry.chain_seq
        self.head_hash = entry.row_hash


def _problem(
    entry: AuditEntry, head_seq: int, head_hash: str | None
) -> tuple[BreakReason, str] | None:
    """What is wrong with `entry` as the row after (`head_seq`, `head_hash`); None: nothing."""
    recomputed = store.hash_document(store.document_of(entry))
    if recomputed != entry.row_hash:
        return (
            BreakReason.CHANGED_ROW,
            f"its fields hash to {recomputed}, not to its stored row_hash {entry.row_hash}",
        )
    if entry.chain_seq > head_seq + 1:
        gap = f"{head_seq + 1}"
        if entry.chain_seq > head_seq + 2:
            gap += f" to {entry.chain_seq - 1}"
        return BreakReason.MISSING_ROW, f"chain_seq {gap} missing before it"
    if entry.prev_hash != head_hash:
        before = "no row" if head_hash is None else f"row_hash {head_hash}"
        return (
            BreakReason.BROKEN_LINK,
            f"its prev_hash is {entry.prev_hash}, the row before has {before}",
        )
    return None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    chains: list[ChainReport] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(chain.rows for chain in self.chains)

    @property
    def ok(self) -> bool:
        return all(chain.first_break is None for chain in self.chains)


class AuditService:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def list_events(
        self,
        tenant_id: uuid.UUID | None,
        *,
        actor: str | None = None,
        action: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> tuple[list[AuditEntry], str]:
        """The tenant's rows (None: the system chain's), newest first, filtered (`since`
        inclusive, `until` exclusive); a page and the token of the next ("" after the last).
        InvalidArgumentError names the ListAuditEvents field at fault."""
        async with self._scope(tenant_id) as connection:
            page = await store.list_events(
                connection,
                tenant_id,
                actor=actor,
                action=action,
                resource_type=resource_type,
                resource_id=resource_id,
                since=since,
                until=until,
                size=page_size,
                token=page_token,
            )
        return page.items, page.next_page_token

    async def record(
        self,
        tenant_id: uuid.UUID | None,
        *,
        actor: str,
        action: str,
        resource_type: str,
        resource_id: str,
        outcome: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """One row that changes nothing else, in its own transaction (tenant None: the
        system's chain)."""
        async with self._scope(tenant_id) as connection:
            await store.record(
                connection,
                tenant_id,
                actor=actor,
                action=action,
                resource_type=resource_type,
                resource_id=resource_id,
                before=None,
                after=None,
                details=details,
                outcome=outcome,
            )

    async def signed_in(self, sign_in: SignIn, principal: Principal) -> None:
        """Record a person's (or service's) first call with a newly verified token: the
        Authenticator's sign-in hook."""
        await self.record(
            principal.tenant_id,
            actor=sign_in.actor,
            action="auth.sign_in",
            resource_type="session",
            resource_id=sign_in.token_id or sign_in.subject,
            outcome="ok",
            details={
                "issuer": sign_in.issuer,
                "subject": sign_in.subject,
                "role": sign_in.role.value,
                "expires_at": sign_in.expires_at.isoformat(),
            },
        )

    async def verify(self, *, only_tenant: uuid.UUID | None = None) -> VerifyReport:
        """Every chain (the system's, then each tenant's), or `only_tenant`'s, walked in order
        in one snapshot, row by row."""
        report = VerifyReport()
        async with self._scope(only_tenant) as connection:
            current: ChainReport | None = None
            async for entry in store.chain_rows(connection, only_tenant=only_tenant):
                if current is None or entry.tenant_id != current.tenant_id:
                    current = ChainReport(entry.tenant_id)
                    report.chains.append(current)
                current.check(entry)
        return report

    async def export(
        self,
        write: Callable[[str], object],
        *,
        only_tenant: uuid.UUID | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Each row (chain by chain, in order) as one JSON line to `write`: its hashed
        document and its `row_hash` (storage/audit.py), streamed; how many were written."""
        written = 0
        async with self._scope(only_tenant) as connection:
            async for entry in store.chain_rows(
                connection, only_tenant=only_tenant, since=since, until=until
            ):
                write(export_line(entry) + "\n")
                written += 1
        return written

    def _scope(self, tenant_id: uuid.UUID | None) -> AbstractAsyncContextManager[Connection]:
        """A transaction of `tenant_id`, or in system scope (the system's chain, every chain)."""
        if tenant_id is None:
            return self._database.system()
        return self._database.tenant(tenant_id)


def export_line(entry: AuditEntry) -> str:
    """The row as exported: its hashed document with `row_hash`, keys sorted, one line."""
    document = {**store.document_of(entry), "row_hash": entry.row_hash}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

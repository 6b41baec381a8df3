"""Operator commands on the audit log: `audit verify` (its hash chains) and `audit export` (JSON
lines for a SIEM). Each uses `DATABASE_URL`, or starts the embedded server under AGENTFLOW_HOME;
neither needs Redis.

The exact hash and line format are in docs/storage.md ("The audit log").
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from agentflow_grpc.cli.common import EXIT_INVALID, fail, run_coroutine
from agentflow_grpc.config import Settings
from agentflow_grpc.services.audit import AuditService, ChainReport, VerifyReport

T = TypeVar("T")


def _instant(_context: click.Context, _parameter: click.Parameter, value: str | None) -> Any:
    """An ISO 8601 time option; without an offset, UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@click.group()
def audit() -> None:
    """The audit log: check its hash chains, export it for a SIEM."""


@audit.command("verify")
@click.option("--tenant", "tenant_name", help="Check this tenant's chain only (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def verify(settings: Settings, tenant_name: str | None, as_json: bool) -> None:
    """Recompute every row's hash and check that each chain is numbered without gaps and
    linked row to row: every tenant's chain and the system's (refused credentials).

    Exits 0 when every chain holds; 1 when a row was changed, removed or re-linked, naming the
    first such row of each chain. Keep the heads it prints: rows removed from the end of a chain
    show only against an earlier head.
    """

    async def check() -> VerifyReport:
        async with _service(settings, tenant_name) as (service, tenant_id):
            return await service.verify(only_tenant=tenant_id)

    report = run_coroutine(check())
    if as_json:
        click.echo(json.dumps(_report_document(report), indent=2))
    else:
        for chain in report.chains:
            click.echo(_chain_line(chain))
        verdict = "intact" if report.ok else "TAMPERED"
        click.echo(f"{report.rows} row(s) in {len(report.chains)} chain(s): {verdict}")
    if not report.ok:
        raise click.exceptions.Exit(EXIT_INVALID)


@audit.command("export")
@click.option("--tenant", "tenant_name", help="Export this tenant's rows only (default: all).")
@click.option("--since", callback=_instant, help="From this ISO 8601 time on (included).")
@click.option("--until", callback=_instant, help="Up to this ISO 8601 time (excluded).")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)
@click.pass_obj
def export(
    settings: Settings,
    tenant_name: str | None,
    since: datetime | None,
    until: datetime | None,
    output: Path | None,
) -> None:
    """Write the audit log as JSON lines, one row a line, chain by chain in order: every
    column, hashes included, times in ISO 8601 UTC. A time without an offset is UTC.

    Each line re-verifies alone: without its `row_hash`, its canonical JSON hashes to it.
    """

    async def write_lines(write: Callable[[str], object]) -> int:
        async with _service(settings, tenant_name) as (service, tenant_id):
            return await service.export(write, only_tenant=tenant_id, since=since, until=until)

    if output is None:
        stdout = sys.stdout.buffer  # written as UTF-8, whatever the locale says
        written = run_coroutine(write_lines(lambda line: stdout.write(line.encode())))
        stdout.flush()
        click.echo(f"exported {written} row(s)", err=True)
        return
    try:
        with output.open("w", encoding="utf-8", newline="\n") as stream:
            written = run_coroutine(write_lines(stream.write))
    except OSError as exc:
        raise fail(f"{output}: cannot write: {exc.strerror or exc}") from None
    click.echo(f"exported {written} row(s) to {output}", err=True)


@asynccontextmanager
async def _service(
    settings: Settings, tenant_name: str | None
) -> AsyncIterator[tuple[AuditService, uuid.UUID | None]]:
    """The audit service on its own pool, and the id of the tenant `--tenant` names."""
    from agentflow_grpc.app import database_dsn
    from agentflow_grpc.services.tenants import TenantService
    from agentflow_grpc.storage import migrations
    from agentflow_grpc.storage.database import Database

    async with database_dsn(settings) as (dsn, _):
        database = await Database.connect(
            dsn,
            min_size=1,
            max_size=2,
            acquire_timeout=settings.database_acquire_timeout,
            schema_revision=migrations.head_revision(),
        )
        try:
            tenant_id = None
            if tenant_name is not None:
                tenant_id = (await TenantService(database).find_tenant(tenant_name)).id
            yield AuditService(database), tenant_id
        finally:
            await database.close()


def _chain_line(chain: ChainReport) -> str:
    """`tenant ID: N row(s), head #SEQ HASH`, and the first break of a broken chain."""
    name = "system" if chain.tenant_id is None else f"tenant {chain.tenant_id}"
    line = f"{name}: {chain.rows} row(s), head #{chain.head_seq} {chain.head_hash}"
    broken = chain.first_break
    if broken is None:
        return line
    return (
        f"{line}\n  BROKEN at row id {broken.row_id} (chain_seq {broken.chain_seq}): "
        f"{broken.reason.value}: {broken.explanation}"
    )


def _report_document(report: VerifyReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "rows": report.rows,
        "chains": [
            {
                "tenant_id": None if chain.tenant_id is None else str(chain.tenant_id),
                "rows": chain.rows,
                "head_seq": chain.head_seq,
                "head_hash": chain.head_hash,
                "first_break": None
                if chain.first_break is None
                else {
                    "row_id": chain.first_break.row_id,
                    "chain_seq": chain.first_break.chain_seq,
                    "reason": chain.first_break.reason.value,
                    "explanation": chain.first_break.explanation,
                },
            }
            for chain in report.chains
        ],
    }

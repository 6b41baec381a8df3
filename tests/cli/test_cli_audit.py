"""`agentflow audit verify` and `agentflow audit export` as real processes against a real
database (`DATABASE_URL`): what they print, their exit codes, and tampering found.

Each test gets its own migrated database holding three chains (two tenants and the system's),
written as the runtime writes them; the tampering is done as the database's owner.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from support.storage import create_database, new_tenant

from agentflow_grpc.services.audit import AuditService
from agentflow_grpc.storage import audit, migrations
from agentflow_grpc.storage.database import Database

pytestmark = pytest.mark.slow  # every test starts `agentflow` processes: seconds each


@dataclass(frozen=True)
class Logged:
    dsn: str
    acme: uuid.UUID  # 3 rows: tenant.create and two changes
    globex: uuid.UUID  # 1 row: tenant.create
    rows: int  # every row, the system's one included


def agentflow(*args: str, dsn: str, home: Path) -> subprocess.CompletedProcess[str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if name != "DATABASE_URL" and not name.startswith("AGENTFLOW_")
    }
    environment.update(
        AGENTFLOW_HOME=str(home),  # where an embedded server would go: must stay unused
        AGENTFLOW_LOG_FORMAT="json",
        DATABASE_URL=dsn,
    )
    return subprocess.run(
        [sys.executable, "-m", "agentflow_grpc", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=environment,
        timeout=60,
        check=False,
    )


@pytest.fixture
async def logged(postgres_dsn: str) -> AsyncIterator[Logged]:
    dsn = await create_database(postgres_dsn, prefix="cliaudit")
    await migrations.upgrade(dsn)
    database = await Database.connect(dsn, min_size=1, max_size=2, acquire_timeout=10)
    try:
        acme, globex = await new_tenant(database, "acme"), await new_tenant(database, "globex")
        service = AuditService(database)
        for index, note in enumerate(["plain", "ünïcode ✓"]):
            await service.record(
                acme.id,
                actor="api_key:1",
                action="WorkflowService.DeleteWorkflow",
                resource_type="workflow",
                resource_id=f"w{index}",
                outcome="not_found",
                details={"note": note},
            )
        await service.record(
            None,
            actor="anonymous",
            action="auth.refused",
            resource_type="credential",
            resource_id="none",
            outcome="unauthenticated",
        )
        yield Logged(dsn, acme.id, globex.id, rows=3 + 1 + 1)
    finally:
        await database.close()


def assert_lines_verify(lines: list[str]) -> list[dict[str, object]]:
    """Every line's hash from the line alone, and the links between a chain's lines (a time
    range's first line links to a row before the range)."""
    documents = [json.loads(line) for line in lines]
    heads: dict[object, object] = {}
    for document in documents:
        row_hash = document.pop("row_hash")
        assert audit.hash_document(document) == row_hash
        if document["tenant_id"] in heads:
            assert document["prev_hash"] == heads[document["tenant_id"]]
        heads[document["tenant_id"]] = row_hash
        document["row_hash"] = row_hash
    return documents


def test_verify_reports_each_chain_and_its_head(logged: Logged, tmp_path: Path) -> None:
    result = agentflow("audit", "verify", dsn=logged.dsn, home=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("system: 1 row(s), head #1 ")
    assert any(line.startswith(f"tenant {logged.acme}: 3 row(s), head #3 ") for line in lines)
    assert any(line.startswith(f"tenant {logged.globex}: 1 row(s), head #1 ") for line in lines)
    assert lines[-1] == f"{logged.rows} row(s) in 3 chain(s): intact"

    one = agentflow("audit", "verify", "--tenant", "acme", "--json", dsn=logged.dsn, home=tmp_path)
    assert one.returncode == 0, one.stderr
    report = json.loads(one.stdout)
    assert report["ok"] is True
    assert report["rows"] == 3
    (chain,) = report["chains"]
    assert chain["tenant_id"] == str(logged.acme)
    assert chain["head_seq"] == 3
    assert chain["first_break"] is None


async def test_verify_exits_1_naming_the_changed_row(logged: Logged, tmp_path: Path) -> None:
    owner = await asyncpg.connect(logged.dsn)
    try:
        target = await owner.fetchval(
            "SELECT id FROM audit_log WHERE tenant_id = $1 AND chain_seq = 2", logged.acme
        )
        await owner.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await owner.execute(
            'UPDATE audit_log SET details = \'{"note": "nothing happened"}\' WHERE id = $1',
            target,
        )
        await owner.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    finally:
        await owner.close()

    result = agentflow("audit", "verify", dsn=logged.dsn, home=tmp_path)

    assert result.returncode == 1, result.stderr
    assert f"  BROKEN at row id {target} (chain_seq 2): changed_row: " in result.stdout
    assert result.stdout.count("BROKEN") == 1
    assert result.stdout.splitlines()[-1] == f"{logged.rows} row(s) in 3 chain(s): TAMPERED"
    assert "Traceback" not in result.stderr
    other = agentflow("audit", "verify", "--tenant", "globex", dsn=logged.dsn, home=tmp_path)
    assert other.returncode == 0, other.stderr


def test_export_to_a_file_writes_every_row_as_a_verifiable_line(
    logged: Logged, tmp_path: Path
) -> None:
    target = tmp_path / "audit.jsonl"

    result = agentflow("audit", "export", "-o", str(target), dsn=logged.dsn, home=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert f"exported {logged.rows} row(s) to {target}" in result.stderr
    lines = target.read_text(encoding="utf-8").splitlines()
    documents = assert_lines_verify(lines)
    assert len(documents) == logged.rows
    assert documents[0]["tenant_id"] is None  # the system's chain first
    starts = [document for document in documents if document["prev_hash"] is None]
    assert [document["chain_seq"] for document in starts] == [1, 1, 1]  # whole chains
    notes = [document["details"] for document in documents if document["resource_id"] == "w1"]
    assert notes == [{"note": "ünïcode ✓"}]
    assert all(str(document["occurred_at"]).endswith("+00:00") for document in documents)


async def test_export_of_one_tenant_and_a_time_range_to_stdout(
    logged: Logged, tmp_path: Path
) -> None:
    owner = await asyncpg.connect(logged.dsn)
    try:
        times = await owner.fetch(
            "SELECT occurred_at FROM audit_log WHERE tenant_id = $1 ORDER BY chain_seq",
            logged.acme,
        )
    finally:
        await owner.close()
    since = times[1]["occurred_at"].isoformat()

    result = agentflow(
        "audit", "export", "--tenant", "acme", "--since", since, dsn=logged.dsn, home=tmp_path
    )

    assert result.returncode == 0, result.stderr
    documents = assert_lines_verify(result.stdout.splitlines())
    assert [document["chain_seq"] for document in documents] == [2, 3]
    assert {document["tenant_id"] for document in documents} == {str(logged.acme)}
    assert "exported 2 row(s)" in result.stderr


def test_unknown_tenants_and_bad_times_fail_cleanly(logged: Logged, tmp_path: Path) -> None:
    unknown = agentflow("audit", "verify", "--tenant", "nope", dsn=logged.dsn, home=tmp_path)
    assert unknown.returncode == 2
    assert "error: no tenant named 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    bad = agentflow("audit", "export", "--until", "yesterday", dsn=logged.dsn, home=tmp_path)
    assert bad.returncode == 2
    assert "'yesterday' is not an ISO 8601 time" in bad.stderr
    assert bad.stdout == ""

"""The operator commands as real processes against a real database (`DATABASE_URL`).

migrate, tenant create, apikey create, generate-key and rotate-keys: what they print (the
useful value alone on stdout, notes on stderr), their exit codes, and what they leave in the
database. One migrated database serves the module; each test uses its own tenant names.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from support.storage import ACTOR, create_database

from agentflow_grpc.storage import migrations, sources, tenants, workflows
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database

KEYS = f"k1:{Keyring.generate_key()}"

pytestmark = pytest.mark.slow  # every test starts `agentflow` processes: seconds each


def agentflow(
    *args: str, dsn: str | None, home: Path, keys: str = KEYS
) -> subprocess.CompletedProcess[str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if name != "DATABASE_URL" and not name.startswith("AGENTFLOW_")
    }
    environment.update(
        AGENTFLOW_HOME=str(home),  # where an embedded server would go: must stay unused
        AGENTFLOW_LOG_FORMAT="json",
        AGENTFLOW_SECRET_KEYS=keys,
    )
    if dsn is not None:
        environment["DATABASE_URL"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "agentflow_grpc", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def assert_clean_failure(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert error_lines(result) == [f"error: {message}"], result.stderr
    assert result.stdout == ""


@pytest.fixture(scope="module")
def dsn(postgres_dsn: str) -> str:
    """A migrated database for this module."""

    async def prepare() -> str:
        dsn = await create_database(postgres_dsn, prefix="cli")
        await migrations.upgrade(dsn)
        return dsn

    return asyncio.run(prepare())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
async def owner(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """The database's owner: sees every row (no row-level security), as an operator would."""
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def database(dsn: str) -> AsyncIterator[Database]:
    database = await Database.connect(dsn, min_size=1, max_size=2, acquire_timeout=10)
    try:
        yield database
    finally:
        await database.close()


async def new_tenant(database: Database, name: str) -> uuid.UUID:
    async with database.system() as connection:
        return (await tenants.create_tenant(connection, name, actor=ACTOR)).id


# --- migrate ---


async def test_migrate_reports_applies_and_goes_back_to_base(postgres_dsn: str, home: Path) -> None:
    fresh = await create_database(postgres_dsn, prefix="cli_migrate")
    head = migrations.head_revision()

    before = agentflow("migrate", "--status", dsn=fresh, home=home)
    assert before.returncode == 0, before.stderr
    assert before.stdout == f"database at revision base (empty) (newest is {head})\n"

    applied = agentflow("migrate", dsn=fresh, home=home)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout == f"database at revision {head} (up to date)\n"
    assert (await migrations.status(fresh)).up_to_date

    back = agentflow("migrate", "--revision", "base", dsn=fresh, home=home)
    assert back.returncode == 0, back.stderr
    assert back.stdout == f"database at revision base (empty) (newest is {head})\n"
    assert (await migrations.status(fresh)).current is None

    again = agentflow("migrate", dsn=fresh, home=home)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"database at revision {head} (up to date)\n"
    assert not home.exists()  # no embedded server was started


def test_migrate_to_an_unknown_revision_is_a_clear_error(dsn: str, home: Path) -> None:
    result = agentflow("migrate", "--revision", "9999", dsn=dsn, home=home)
    assert_clean_failure(
        result,
        "cannot migrate to revision '9999': Can't locate revision identified by '9999'",
    )
    beyond = agentflow("migrate", "--revision", "+1", dsn=dsn, home=home)  # already at head
    assert beyond.returncode == 2, beyond.stderr
    assert "Traceback" not in beyond.stderr
    assert len(error_lines(beyond)) == 1


# --- tenant create ---


async def test_tenant_create_prints_the_id_and_refuses_duplicates_and_bad_names(
    dsn: str, home: Path, owner: asyncpg.Connection
) -> None:
    created = agentflow("tenant", "create", "acme", dsn=dsn, home=home)
    assert created.returncode == 0, created.stderr
    tenant_id = uuid.UUID(created.stdout.strip())
    assert created.stdout == f"{tenant_id}\n"
    assert "created tenant acme" in created.stderr
    assert await owner.fetchval("SELECT id FROM tenants WHERE name = 'acme'") == tenant_id

    again = agentflow("tenant", "create", "acme", dsn=dsn, home=home)
    assert_clean_failure(again, "a tenant named 'acme' already exists")

    bad = agentflow("tenant", "create", "Bad_Name", dsn=dsn, home=home)
    assert_clean_failure(
        bad,
        "tenant name 'Bad_Name' must be 1-63 lower-case letters, digits and dashes, "
        "starting and ending with a letter or digit",
    )
    assert await owner.fetchval("SELECT count(*) FROM tenants WHERE name = 'acme'") == 1
    assert await owner.fetchval("SELECT count(*) FROM tenants WHERE name = 'Bad_Name'") == 0


async def test_tenant_create_on_a_database_never_migrated_says_to_run_migrate(
    postgres_dsn: str, dsn: str, home: Path
) -> None:
    # `dsn` is migrated: the cluster-wide role exists, as on any server already in use.
    unmigrated = await create_database(postgres_dsn, prefix="cli_unmigrated")
    result = agentflow("tenant", "create", "acme", dsn=unmigrated, home=home)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(error_lines(result)) == 1
    assert "agentflow migrate" in error_lines(result)[0]


# --- apikey create ---


async def test_apikey_create_prints_the_key_once_and_stores_only_its_hash(
    dsn: str, home: Path, database: Database, owner: asyncpg.Connection
) -> None:
    tenant_id = await new_tenant(database, "keys-co")

    result = agentflow(
        "apikey", "create", "--tenant", "keys-co", "--role", "editor", dsn=dsn, home=home
    )

    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert result.stdout == f"{key}\n"
    assert re.fullmatch(r"af_[A-Za-z0-9_-]{43}", key), key
    assert "cannot be shown again" in result.stderr
    assert key not in result.stderr
    row = await owner.fetchrow("SELECT * FROM api_keys WHERE tenant_id = $1", tenant_id)
    assert row["key_hash"] == hashlib.sha256(key.encode()).digest()
    assert row["role"] == "editor"
    assert row["prefix"] == key[:12]
    assert row["created_by"] == "operator:cli"
    # Neither the key nor its secret part (after the shown prefix) is stored anywhere.
    for text in (key, key[12:]):
        for table in ("api_keys", "audit_log"):
            assert not await owner.fetchval(
                f"SELECT count(*) FROM {table} t WHERE strpos(t::text, $1) > 0", text
            ), f"{table} holds the key"
    assert (
        await owner.fetchval(
            "SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = 'api_key.create'",
            tenant_id,
        )
        == 1
    )


async def test_apikey_create_json_gives_the_key_and_its_record(
    dsn: str, home: Path, database: Database, owner: asyncpg.Connection
) -> None:
    tenant_id = await new_tenant(database, "json-co")

    result = agentflow(
        "apikey",
        "create",
        "--tenant",
        "json-co",
        "--role",
        "runner",
        "--description",
        "ci deploys",
        "--json",
        dsn=dsn,
        home=home,
    )

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {
        "key",
        "id",
        "tenant_id",
        "role",
        "prefix",
        "expires_at",
        "workflow_ids",
    }
    assert document["expires_at"] is None
    assert document["workflow_ids"] is None
    assert document["key"].startswith("af_")
    assert document["tenant_id"] == str(tenant_id)
    assert document["role"] == "runner"
    assert document["prefix"] == document["key"][:12]
    row = await owner.fetchrow("SELECT * FROM api_keys WHERE id = $1", uuid.UUID(document["id"]))
    assert row["tenant_id"] == tenant_id
    assert row["description"] == "ci deploys"
    assert row["key_hash"] == hashlib.sha256(document["key"].encode()).digest()


async def test_apikey_create_with_an_expiry_and_workflows_stores_both(
    dsn: str, home: Path, database: Database, owner: asyncpg.Connection
) -> None:
    tenant_id = await new_tenant(database, "limited-co")
    async with database.tenant(tenant_id) as connection:
        made = [
            await workflows.create(
                connection, tenant_id, name=name, spec={"name": name}, spec_hash=name, actor=ACTOR
            )
            for name in ("first", "second")
        ]
    before = datetime.now(UTC)

    result = agentflow(
        "apikey",
        "create",
        "--tenant",
        "limited-co",
        "--role",
        "runner",
        "--expires-in",
        "12h",
        "--workflow",
        str(made[0].id),
        "--workflow",
        str(made[1].id),
        "--json",
        dsn=dsn,
        home=home,
    )

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    row = await owner.fetchrow("SELECT * FROM api_keys WHERE id = $1", uuid.UUID(document["id"]))
    assert before + timedelta(hours=12) <= row["expires_at"]
    assert row["expires_at"] <= datetime.now(UTC) + timedelta(hours=12)
    assert document["expires_at"] == row["expires_at"].isoformat()
    assert row["workflow_ids"] == [made[0].id, made[1].id]
    assert document["workflow_ids"] == [str(made[0].id), str(made[1].id)]

    plain = agentflow(
        "apikey", "create", "--tenant", "limited-co", "--role", "viewer", "--expires-in", "30d",
        "--workflow", str(made[0].id), dsn=dsn, home=home,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("af_")
    assert "It expires at " in plain.stderr
    assert "It may use 1 workflow only." in plain.stderr


async def test_apikey_create_refuses_a_bad_expiry_or_an_unknown_workflow(
    dsn: str, home: Path, database: Database
) -> None:
    for duration in ("soon", "0s"):
        bad = agentflow(
            "apikey", "create", "--tenant", "nope", "--role", "viewer", "--expires-in", duration,
            dsn=dsn, home=home,
        )  # fmt: skip
        assert bad.returncode == 2, bad.stderr
        assert "Traceback" not in bad.stderr
        assert "Invalid value for '--expires-in'" in bad.stderr
        assert bad.stdout == ""
    await new_tenant(database, "workflowless")
    unknown = str(uuid.uuid4())
    result = agentflow(
        "apikey", "create", "--tenant", "workflowless", "--role", "viewer", "--workflow", unknown,
        dsn=dsn, home=home,
    )  # fmt: skip
    assert_clean_failure(result, f"workflow_ids: no workflow {unknown} in this tenant")


def test_apikey_create_for_an_unknown_tenant_or_role_fails_clearly(dsn: str, home: Path) -> None:
    unknown = agentflow(
        "apikey", "create", "--tenant", "nope", "--role", "viewer", dsn=dsn, home=home
    )
    assert_clean_failure(unknown, "no tenant named 'nope'")

    bad_role = agentflow(
        "apikey", "create", "--tenant", "nope", "--role", "boss", dsn=dsn, home=home
    )
    assert bad_role.returncode == 2
    assert "Traceback" not in bad_role.stderr
    assert "Usage: agentflow apikey create" in bad_role.stderr
    assert "Invalid value for '--role': 'boss' is not one of" in bad_role.stderr
    assert bad_role.stdout == ""


# --- generate-key ---


@pytest.mark.parametrize(("arguments", "key_id"), [((), "k1"), (("--id", "other"), "other")])
def test_generate_key_prints_a_keyring_entry(
    home: Path, arguments: tuple[str, ...], key_id: str
) -> None:
    result = agentflow("generate-key", *arguments, dsn=None, home=home)
    assert result.returncode == 0, result.stderr
    entry = result.stdout.strip()
    assert result.stdout == f"{entry}\n"
    found_id, _, key = entry.partition(":")
    assert found_id == key_id
    assert len(base64.b64decode(key, validate=True)) == 32
    assert Keyring.parse(entry).key_ids == (key_id,)
    assert not home.exists()


# --- rotate-keys ---


async def test_rotate_keys_reseals_every_secret_under_the_newest_key(
    dsn: str, home: Path, database: Database, owner: asyncpg.Connection
) -> None:
    old_entry, new_entry = f"old:{Keyring.generate_key()}", f"new:{Keyring.generate_key()}"
    old, new = Keyring.parse(old_entry), Keyring.parse(new_entry)
    tenant_ids = [await new_tenant(database, name) for name in ("rotate-a", "rotate-b")]
    for index, tenant_id in enumerate(tenant_ids):
        async with database.tenant(tenant_id) as connection:
            await sources.create(
                connection,
                tenant_id,
                old,
                name="crm",
                type="http",
                config={"base_url": "https://crm.example"},
                secrets={"token": f"secret-{index}"},
                actor=ACTOR,
            )

    keys = f"{old_entry},{new_entry}"
    result = agentflow("rotate-keys", dsn=dsn, home=home, keys=keys)

    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        're-encrypted 2 source secret(s) under key new; secrets by key now: {"new": 2}\n'
    )
    stored = await owner.fetch(
        "SELECT tenant_id, secret_key_id FROM sources WHERE tenant_id = ANY($1::uuid[])",
        tenant_ids,
    )
    assert sorted(row["secret_key_id"] for row in stored) == ["new", "new"]
    for index, tenant_id in enumerate(tenant_ids):
        async with database.tenant(tenant_id) as connection:
            (definition,) = await sources.definitions(connection, tenant_id, new)
        assert definition.secrets["token"].get_secret_value() == f"secret-{index}"
        assert set(definition.secrets) == {"token"}

    again = agentflow("rotate-keys", dsn=dsn, home=home, keys=keys)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("re-encrypted 0 source secret(s) under key new;")

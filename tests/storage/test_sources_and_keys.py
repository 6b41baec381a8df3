"""Sources with sealed secrets, key rotation, and API keys: secrets are write-only everywhere."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from datetime import UTC, datetime

import asyncpg
import pytest
from support.storage import ACTOR

from agentflow_grpc.model.errors import (
    AlreadyExistsError,
    EtagMismatchError,
    InvalidArgumentError,
    SecretDecryptionError,
)
from agentflow_grpc.model.records import ApiKeyState, Role, StoredSource, Tenant
from agentflow_grpc.services.keys import rotate_secrets
from agentflow_grpc.storage import audit, sources, tenants
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database

SECRET = "sk-live-5f1c0a9e"


def ring(*ids: str) -> Keyring:
    return Keyring([(key_id, hashlib.sha256(key_id.encode()).digest()) for key_id in ids])


async def make_source(
    database: Database, tenant: Tenant, keyring: Keyring, name: str = "openai-main"
) -> StoredSource:
    async with database.tenant(tenant.id) as connection:
        return await sources.create(
            connection,
            tenant.id,
            keyring,
            name=name,
            type="openai",
            config={"model": "gpt-4o-mini"},
            secrets={"api_key": SECRET},
            actor=ACTOR,
        )


async def test_secrets_are_sealed_at_rest_and_never_in_records(
    database: Database, tenant_a: Tenant, keyring: Keyring, owner: asyncpg.Connection
) -> None:
    source = await make_source(database, tenant_a, keyring)
    assert source.secret_names == ("api_key",)
    assert SECRET not in repr(source)
    row = await owner.fetchrow("SELECT * FROM sources WHERE id = $1", source.id)
    stored = " ".join(str(value) for value in row.values())
    assert SECRET not in stored
    assert SECRET.encode() not in row["secret_blob"]
    assert row["secret_key_id"] == keyring.newest_key_id
    audit_rows = await owner.fetch("SELECT * FROM audit_log")
    assert SECRET not in " ".join(str(dict(r)) for r in audit_rows)
    async with database.tenant(tenant_a.id) as connection:
        (definition,) = await sources.definitions(connection, tenant_a.id, keyring)
    assert definition.secrets["api_key"].get_secret_value() == SECRET
    assert SECRET not in repr(definition)


async def test_a_blob_copied_to_another_row_does_not_open(
    database: Database,
    tenant_a: Tenant,
    tenant_b: Tenant,
    keyring: Keyring,
    owner: asyncpg.Connection,
) -> None:
    stolen = await make_source(database, tenant_a, keyring, "victim")
    thief = await make_source(database, tenant_b, keyring, "thief")
    await owner.execute(
        "UPDATE sources SET secret_blob = (SELECT secret_blob FROM sources WHERE id = $1) "
        "WHERE id = $2",
        stolen.id,
        thief.id,
    )
    async with database.tenant(tenant_b.id) as connection:
        with pytest.raises(SecretDecryptionError):
            await sources.definitions(connection, tenant_b.id, keyring)


async def test_update_replaces_fields_given_and_keeps_the_rest(
    database: Database, tenant_a: Tenant, keyring: Keyring
) -> None:
    source = await make_source(database, tenant_a, keyring)
    async with database.tenant(tenant_a.id) as connection:
        renamed = await sources.update(
            connection, tenant_a.id, source.id, keyring, etag=source.etag, actor=ACTOR,
            name="openai-backup", description="the spare key",
        )  # fmt: skip
        (kept,) = await sources.definitions(connection, tenant_a.id, keyring)
        assert (renamed.name, renamed.description, renamed.config) == (
            "openai-backup",
            "the spare key",
            {"model": "gpt-4o-mini"},
        )
        assert kept.secrets["api_key"].get_secret_value() == SECRET
        rekeyed = await sources.update(
            connection, tenant_a.id, source.id, keyring, etag=renamed.etag, actor=ACTOR,
            secrets={"api_key": "sk-new", "organization": "org-1"},
        )  # fmt: skip
        (replaced,) = await sources.definitions(connection, tenant_a.id, keyring)
        assert rekeyed.secret_names == ("api_key", "organization")
        assert replaced.secrets["api_key"].get_secret_value() == "sk-new"
        with pytest.raises(EtagMismatchError):
            await sources.update(
                connection, tenant_a.id, source.id, keyring, etag=source.etag, actor=ACTOR,
                description="late",
            )  # fmt: skip


async def test_names_are_unique_among_live_sources(
    database: Database, tenant_a: Tenant, tenant_b: Tenant, keyring: Keyring
) -> None:
    first = await make_source(database, tenant_a, keyring)
    with pytest.raises(AlreadyExistsError, match="openai-main"):
        await make_source(database, tenant_a, keyring)
    await make_source(database, tenant_b, keyring)  # another tenant may use the name
    async with database.tenant(tenant_a.id) as connection:
        deleted = await sources.delete(connection, tenant_a.id, first.id, etag=None, actor=ACTOR)
        assert deleted.deleted_at is not None
        assert await sources.types_by_name(connection, tenant_a.id) == {}
    again = await make_source(database, tenant_a, keyring)  # the name is free once deleted
    assert again.id != first.id


async def test_delete_erases_the_sealed_secrets(
    database: Database, tenant_a: Tenant, keyring: Keyring, owner: asyncpg.Connection
) -> None:
    source = await make_source(database, tenant_a, keyring)
    async with database.tenant(tenant_a.id) as connection:
        await sources.delete(connection, tenant_a.id, source.id, etag=source.etag, actor=ACTOR)
    row = await owner.fetchrow("SELECT secret_blob, secret_key_id FROM sources")
    assert (row["secret_blob"], row["secret_key_id"]) == (None, None)


async def test_rotation_reseals_every_secret_under_the_newest_key(
    database: Database, tenant_a: Tenant, tenant_b: Tenant, owner: asyncpg.Connection
) -> None:
    old = ring("old")
    for tenant in (tenant_a, tenant_b):
        for index in range(3):
            await make_source(database, tenant, old, f"source-{index}")
    both = ring("old", "new")
    # While rotation is pending, the service reads secrets under either key.
    async with database.tenant(tenant_a.id) as connection:
        assert len(await sources.definitions(connection, tenant_a.id, both)) == 3

    report = await rotate_secrets(database, both, batch=2)

    assert report.resealed == 6
    assert (report.by_key_before, report.by_key_after) == ({"old": 6}, {"new": 6})
    only_new = ring("new")
    for tenant in (tenant_a, tenant_b):
        async with database.tenant(tenant.id) as connection:
            opened = await sources.definitions(connection, tenant.id, only_new)
        assert {d.secrets["api_key"].get_secret_value() for d in opened} == {SECRET}
    assert (await rotate_secrets(database, both)).resealed == 0
    resealed = await owner.fetch("SELECT * FROM audit_log WHERE action = 'source.reseal'")
    assert len(resealed) == 6
    assert {row["details"] for row in resealed} == {'{"to_key": "new", "from_key": "old"}'}


async def test_api_keys_store_only_a_hash_and_can_be_revoked(
    database: Database, tenant_a: Tenant, owner: asyncpg.Connection
) -> None:
    async with database.tenant(tenant_a.id) as connection:
        record, key = await tenants.create_api_key(
            connection, tenant_a.id, role=Role.RUNNER, description="ci", actor=ACTOR
        )
    assert key.startswith("af_")
    assert len(key) >= 40
    assert record.prefix == key[:12]
    row = await owner.fetchrow("SELECT * FROM api_keys")
    assert row["key_hash"] == hashlib.sha256(key.encode()).digest()
    assert key not in " ".join(str(value) for value in row.values())
    async with database.system() as connection:
        found = await tenants.find_api_key(connection, key)
        assert found is not None
        assert found.role is Role.RUNNER
        assert found.state(datetime.now(UTC)) is ApiKeyState.ACTIVE
        assert await tenants.find_api_key(connection, key + "x") is None
        assert await tenants.find_api_key(connection, "not-a-key") is None
    async with database.tenant(tenant_a.id) as connection:
        revoked = await tenants.revoke_api_key(connection, tenant_a.id, record.id, actor=ACTOR)
        assert revoked.revoked_at is not None
        again = await tenants.revoke_api_key(connection, tenant_a.id, record.id, actor=ACTOR)
        assert again.revoked_at == revoked.revoked_at
        actions = [e.action for e in await audit.list_entries(connection, tenant_a.id)]
    assert actions == ["tenant.create", "api_key.create", "api_key.revoke"]
    async with database.system() as connection:
        found = await tenants.find_api_key(connection, key)
        assert found is not None
        assert found.state(datetime.now(UTC)) is ApiKeyState.REVOKED


async def test_tenant_names_are_checked_and_unique(database: Database, tenant_a: Tenant) -> None:
    async with database.system() as connection:
        with pytest.raises(AlreadyExistsError):
            await tenants.create_tenant(connection, tenant_a.name, actor=ACTOR)
    for bad in ("", "Upper", "-dash", "dash-", "under_score", "x" * 64):
        async with database.system() as connection:
            with pytest.raises(InvalidArgumentError) as invalid:
                await tenants.create_tenant(connection, bad, actor=ACTOR)
        assert invalid.value.field == "name"


async def test_secrets_are_never_logged(
    database: Database,
    tenant_a: Tenant,
    keyring: Keyring,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Neither stdlib records nor structlog lines (written to the process's streams) hold it."""
    caplog.set_level(logging.DEBUG)
    source = await make_source(database, tenant_a, keyring)
    async with database.tenant(tenant_a.id) as connection:
        await sources.update(
            connection, tenant_a.id, source.id, keyring, etag=None, actor=ACTOR,
            secrets={"api_key": SECRET + "-2"},
        )  # fmt: skip
        await sources.definitions(connection, tenant_a.id, keyring)
    written = capfd.readouterr()
    for text in (caplog.text, written.out, written.err):
        assert SECRET not in text
        assert base64.b64encode(SECRET.encode()).decode() not in text


async def test_rotation_runs_while_runs_read_secrets(database: Database, tenant_a: Tenant) -> None:
    """No downtime: readers with both keys keep opening every secret while rows switch keys."""
    old, both = ring("old"), ring("old", "new")
    for index in range(40):
        await make_source(database, tenant_a, old, f"source-{index}")
    rotating = asyncio.create_task(rotate_secrets(database, both, batch=3))
    reads = 0
    while not rotating.done():
        async with database.tenant(tenant_a.id) as connection:
            opened = await sources.definitions(connection, tenant_a.id, both)
        assert {d.secrets["api_key"].get_secret_value() for d in opened} == {SECRET}
        assert len(opened) == 40
        reads += 1
    assert (await rotating).resealed == 40
    assert reads >= 2

"""The composition root's two database paths: `DATABASE_URL`, or the embedded server.

`open_app` with a DATABASE_URL uses that server and starts nothing; without one it starts a
PostgreSQL under AGENTFLOW_HOME/postgres, stops it on exit, and finds its data again on the next
start. `load_keyring` takes AGENTFLOW_SECRET_KEYS, or (embedded only) a key file it makes once.
The embedded server is started twice in this file (each start takes a few seconds).
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import asyncpg
import psutil
import pytest
from support.storage import ACTOR, create_database

from agentflow_grpc.app import DEV_KEY_FILE, load_keyring, open_app
from agentflow_grpc.config import Settings
from agentflow_grpc.model.errors import ConfigurationError, NotFoundError
from agentflow_grpc.storage import migrations
from agentflow_grpc.storage.crypto import Keyring

CONTEXT = b"agentflow/test"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DATABASE_URL or AGENTFLOW_* from the developer's shell may reach Settings."""
    for name in list(os.environ):
        if name == "DATABASE_URL" or name.startswith("AGENTFLOW_"):
            monkeypatch.delenv(name)


def secret_keys(*key_ids: str) -> str:
    return ",".join(f"{key_id}:{Keyring.generate_key()}" for key_id in key_ids)


def postmaster_pid(home: Path) -> int:
    return int((home / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- DATABASE_URL ---


async def test_with_database_url_it_uses_that_server_and_starts_none(
    postgres_dsn: str, tmp_path: Path
) -> None:
    dsn = await create_database(postgres_dsn)
    settings = Settings(home=tmp_path, database_url=dsn, secret_keys=secret_keys("k1"))

    async with open_app(settings, migrate=True) as app:
        assert app.dsn == dsn
        assert app.embedded is False
        assert app.keyring.key_ids == ("k1",)
        created = await app.tenants.create_tenant("acme", actor=ACTOR)
        assert (await app.tenants.find_tenant("acme")).id == created.id

    assert not (tmp_path / "postgres").exists()
    assert not (tmp_path / DEV_KEY_FILE).exists()
    assert (await migrations.status(dsn)).up_to_date  # migrate=True migrated that database
    connection = await asyncpg.connect(dsn)
    try:
        assert await connection.fetchval("SELECT id FROM tenants WHERE name = 'acme'") == created.id
    finally:
        await connection.close()


async def test_with_database_url_not_migrated_it_says_to_run_migrate(
    postgres_dsn: str, migrated_dsn: str, tmp_path: Path
) -> None:
    # `migrated_dsn`: the cluster-wide role exists, so only the schema check can tell.
    dsn = await create_database(postgres_dsn)
    settings = Settings(home=tmp_path, database_url=dsn, secret_keys=secret_keys("k1"))
    with pytest.raises(ConfigurationError, match="run `agentflow migrate`"):
        async with open_app(settings):
            pass
    assert (await migrations.status(dsn)).current is None  # nothing was applied


async def test_with_database_url_and_no_secret_keys_it_refuses_to_open(
    migrated_dsn: str, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, database_url=migrated_dsn, secret_keys=None)
    with pytest.raises(ConfigurationError, match="AGENTFLOW_SECRET_KEYS"):
        async with open_app(settings):
            pass
    assert not (tmp_path / DEV_KEY_FILE).exists()


# --- the embedded server ---


@pytest.mark.slow
async def test_without_database_url_it_runs_an_embedded_server_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"  # does not exist yet: the first start makes it
    settings = Settings(home=home, database_url=None, secret_keys=None)

    async with open_app(settings, migrate=True) as app:
        assert app.embedded is True
        assert (home / "postgres" / "PG_VERSION").is_file()
        assert (await migrations.status(app.dsn)).up_to_date
        created = await app.tenants.create_tenant("acme", actor=ACTOR)
        key_ids = app.keyring.key_ids
        sealed = app.keyring.seal({"token": "t"}, context=CONTEXT)
        first_pid = postmaster_pid(home)
        assert is_running(first_pid)
    assert not is_running(first_pid), "the embedded server outlived open_app"
    assert not (home / "postgres" / "postmaster.pid").exists()

    async with open_app(settings, migrate=True) as app:
        assert app.embedded is True
        found = await app.tenants.find_tenant("acme")
        assert (found.id, found.name) == (created.id, created.name)
        with pytest.raises(NotFoundError):
            await app.tenants.find_tenant("other")
        assert app.keyring.key_ids == key_ids
        assert app.keyring.open(sealed, context=CONTEXT) == {"token": "t"}
        second_pid = postmaster_pid(home)
    assert not is_running(second_pid)


# --- load_keyring ---


@pytest.mark.parametrize("embedded", [True, False])
def test_secret_keys_from_the_environment_win(tmp_path: Path, embedded: bool) -> None:
    settings = Settings(
        home=tmp_path,
        database_url=None if embedded else "postgresql://db.example/agentflow",
        secret_keys=secret_keys("old", "new"),
    )
    keyring = load_keyring(settings, embedded=embedded)
    assert keyring.key_ids == ("old", "new")
    assert keyring.newest_key_id == "new"
    assert not (tmp_path / DEV_KEY_FILE).exists()


def test_embedded_without_keys_makes_a_private_key_file_once_and_reuses_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "not-yet"
    settings = Settings(home=home, database_url=None, secret_keys=None)

    first = load_keyring(settings, embedded=True)

    path = home / DEV_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    key_id, _, key = text.strip().partition(":")
    assert first.key_ids == (key_id,)
    assert len(base64.b64decode(key, validate=True)) == 32
    sealed = first.seal({"password": "p"}, context=CONTEXT)

    second = load_keyring(settings, embedded=True)

    assert path.read_text() == text
    assert second.key_ids == first.key_ids
    assert second.open(sealed, context=CONTEXT) == {"password": "p"}  # the same key


def test_database_url_without_keys_names_the_variable(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, database_url="postgresql://db.example/agentflow", secret_keys=None
    )
    with pytest.raises(ConfigurationError, match="AGENTFLOW_SECRET_KEYS") as raised:
        load_keyring(settings, embedded=False)
    assert "agentflow generate-key" in raised.value.message
    assert not (tmp_path / DEV_KEY_FILE).exists()

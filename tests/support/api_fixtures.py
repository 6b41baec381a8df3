"""Fixtures for API tests: a real grpc.aio server on a free port, over the session's database.

A pytest plugin, loaded by tests/conftest.py. `api` is a running server with a fresh tenant and
an API key of each role; the tables are emptied after each test (the `owner` fixture). `client`
is the generated stubs on a channel to it, `md` an admin's metadata.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import pytest
from pydantic import SecretStr

from agentflow_grpc.api.server import ApiServer
from agentflow_grpc.api.tls import ReloadingServerTls
from agentflow_grpc.app import open_app
from agentflow_grpc.config import Settings
from agentflow_grpc.model.records import Role
from support.api_helpers import Client, client_of


@dataclass
class RunningApi:
    server: ApiServer
    address: str
    keys: dict[Role, str]  # one key of each role, all of tenant `acme`
    other_tenant_key: str  # an admin key of tenant `globex`

    def metadata(self, role: Role = Role.ADMIN) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.keys[role]),)

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address)


def api_settings(dsn: str, redis_url: str, **overrides: object) -> Settings:
    key = base64.b64encode(os.urandom(32)).decode()
    return Settings(
        database_url=SecretStr(dsn),
        redis_url=SecretStr(redis_url),
        # Each test's queue, leases and event streams apart: the session shares one Valkey.
        redis_prefix=f"test-{uuid.uuid4().hex[:12]}",
        secret_keys=SecretStr(f"test:{key}"),
        grpc_port=0,
        shutdown_grace=2.0,
        node_timeout=30,
        execution_timeout=60,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
async def api(migrated_dsn: str, redis_url: str, owner: object) -> AsyncIterator[RunningApi]:
    async with running_api(api_settings(migrated_dsn, redis_url)) as running:
        yield running


@pytest.fixture
async def client(api: RunningApi) -> AsyncIterator[Client]:
    """The generated stubs on a channel to `api` (modules that need more override it)."""
    async with api.channel() as channel:
        yield client_of(channel)


@pytest.fixture
def md(api: RunningApi) -> tuple[tuple[str, str], ...]:
    """The metadata of an admin of tenant `acme`."""
    return api.metadata()


@asynccontextmanager
async def running_api(
    settings: Settings, tls: ReloadingServerTls | None = None
) -> AsyncIterator[RunningApi]:
    """A server on `settings`, with tenant `acme` (a key of each role) and `globex` (admin);
    `tls`: it serves TLS only."""
    async with open_app(settings) as app:
        server = await ApiServer.start(
            app, port=0, max_message_bytes=settings.max_message_bytes, tls=tls
        )
        try:
            acme = await app.tenants.create_tenant("acme", actor="operator:test")
            keys = {}
            for role in Role:
                _, key = await app.tenants.create_api_key(
                    acme.name, role=role, actor="operator:test"
                )
                keys[role] = key
            await app.tenants.create_tenant("globex", actor="operator:test")
            _, other = await app.tenants.create_api_key(
                "globex", role=Role.ADMIN, actor="operator:test"
            )
            yield RunningApi(server, server.address, keys, other)
        finally:
            await server.stop(settings.shutdown_grace)

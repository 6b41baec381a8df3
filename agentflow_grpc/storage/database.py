"""The connection pool, and the two ways to use it: as one tenant, or as the system.

Every connection runs as the role `agentflow_app` (set at connection start-up, so even a
superuser `DATABASE_URL` is subject to row-level security). The role sees a row only when the
transaction has named its tenant (`agentflow.tenant_id`), or has said it works across tenants
(`agentflow.scope = system`: authentication by key hash, key rotation, creating tenants).
Repositories take the connection and the tenant explicitly; the policies are the second wall.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg

from agentflow_grpc.model.errors import ConfigurationError, UnavailableError
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.storage")

APP_ROLE = "agentflow_app"
TENANT_SETTING = "agentflow.tenant_id"
SCOPE_SETTING = "agentflow.scope"

# The server went away, or ended this session (pg_terminate_backend, a restart).
_CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    ConnectionError,
)

Connection: TypeAlias = asyncpg.Connection  # asyncpg has no type hints: Any to mypy


class Database:
    """An asyncpg pool of `agentflow_app` connections. Build with `Database.connect(...)`."""

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float) -> None:
        self.pool = pool
        self._acquire_timeout = acquire_timeout

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout: float = 30.0,
        schema_revision: str | None = None,
    ) -> Database:
        """Open the pool; a clear error if the server is unreachable or not migrated (to
        `schema_revision`, when given: the newest revision this code knows)."""
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                server_settings={"role": APP_ROLE, "application_name": "agentflow"},
            )
        except asyncpg.InvalidParameterValueError as exc:
            if APP_ROLE in str(exc):
                raise ConfigurationError(
                    f"the database has no {APP_ROLE} role: run `agentflow migrate` first"
                ) from None
            raise
        except (OSError, asyncpg.PostgresError) as exc:
            raise UnavailableError(
                f"cannot connect to PostgreSQL at {_where(dsn)}: {exc}"
            ) from None
        database = cls(pool, acquire_timeout=acquire_timeout)
        try:
            await database._check(schema_revision)
        except BaseException:
            await pool.close()
            raise
        return database

    async def _check(self, schema_revision: str | None) -> None:
        """The schema is there (at `schema_revision`, when given) and the role obeys RLS."""
        async with self.pool.acquire() as connection:
            bypasses = await connection.fetchval(
                "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
            )
            try:
                revision = await connection.fetchval("SELECT version_num FROM alembic_version")
            except (asyncpg.UndefinedTableError, asyncpg.InsufficientPrivilegeError):
                revision = None
        if bypasses:
            raise ConfigurationError(
                f"role {APP_ROLE} bypasses row-level security (superuser or BYPASSRLS); "
                "tenant isolation would not hold"
            )
        if revision is None:
            raise ConfigurationError(
                "the database has no AgentFlow schema: run `agentflow migrate` first"
            )
        if schema_revision is not None and revision != schema_revision:
            raise ConfigurationError(
                f"the database schema is at revision {revision}, and this AgentFlow needs "
                f"{schema_revision}: run `agentflow migrate --revision {schema_revision}`"
            )

    async def close(self) -> None:
        await self.pool.close()

    def pool_use(self) -> tuple[int, int, int]:
        """The pool's connections in use and idle, and the most it opens (read by the metrics
        at each scrape)."""
        pool = self.pool
        idle = pool.get_idle_size()
        return pool.get_size() - idle, idle, pool.get_max_size()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection, waiting at most `acquire_timeout` when all are busy."""
        try:
            connection = await self.pool.acquire(timeout=self._acquire_timeout)
        except TimeoutError:
            raise UnavailableError(
                f"no database connection came free within {self._acquire_timeout:g} s"
            ) from None
        except (OSError, asyncpg.PostgresConnectionError) as exc:
            raise UnavailableError(f"cannot connect to PostgreSQL: {exc}") from None
        try:
            yield connection
        finally:
            await self.pool.release(connection)

    @asynccontextmanager
    async def tenant(self, tenant_id: uuid.UUID) -> AsyncIterator[Connection]:
        """A transaction that sees the rows of `tenant_id` only."""
        async with self._transaction(TENANT_SETTING, str(tenant_id)) as connection:
            yield connection

    @asynccontextmanager
    async def system(self) -> AsyncIterator[Connection]:
        """A transaction across tenants, for the few jobs that need it (see the module doc)."""
        async with self._transaction(SCOPE_SETTING, "system") as connection:
            yield connection

    @asynccontextmanager
    async def _transaction(self, setting: str, value: str) -> AsyncIterator[Connection]:
        """A transaction with `setting` set for its length; a connection lost on the way (the
        transaction then rolled back, on the server) is an UnavailableError."""
        async with self.connection() as connection:
            try:
                async with connection.transaction():
                    await connection.execute("SELECT set_config($1, $2, true)", setting, value)
                    yield connection
            except _CONNECTION_LOST as exc:
                raise UnavailableError(f"the database connection was lost: {exc}") from exc
            except asyncpg.InterfaceError as exc:
                if not _is_lost(connection):
                    raise
                raise UnavailableError(f"the database connection was lost: {exc}") from exc

    async def ping(self) -> float:
        """Round-trip time of a trivial query, in milliseconds (for health checks)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with self.connection() as connection:
            await connection.fetchval("SELECT 1")
        return (loop.time() - started) * 1000


async def _init_connection(connection: Connection) -> None:
    """JSON columns arrive as Python values and are written from them."""
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, encoder=_dump_json, decoder=json.loads, schema="pg_catalog"
        )


# One encoder for every value: json.dumps with options builds a new encoder on each call.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _dump_json(value: object) -> str:
    """JSON text for a json/jsonb column. PostgreSQL cannot store U+0000 in text: it becomes
    U+FFFD (the replacement character), so a provider's odd reply cannot lose a run's events."""
    text = _encode_json(value)
    if "\\u0000" in text:  # rare: only then walk the value to replace it exactly
        text = _encode_json(_without_nul(value))
    return text


def _without_nul(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(item) for item in value]
    return value


def _is_lost(connection: Connection) -> bool:
    try:
        return bool(connection.is_closed())
    except asyncpg.InterfaceError:  # the pool has already taken back the closed connection
        return True


def _where(dsn: str) -> str:
    """Host and port (or socket directory) of a DSN, without its user or password."""
    parts = urllib.parse.urlsplit(dsn)
    socket = urllib.parse.parse_qs(parts.query).get("host")
    if socket:
        return socket[0]
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"

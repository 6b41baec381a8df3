"""What the server processes of `agentflow serve --processes N` (and of `agentflow dev`) share,
made ready once by the process that supervises them.

`shared_backends(settings, migrate=…)` starts what is not given by URL — the embedded
PostgreSQL (no `DATABASE_URL`), the embedded Valkey (no `REDIS_URL`) — as `open_app` would,
migrates once, and yields what the server processes add to their environment so that they use
those servers rather than start their own: their URLs and, for the embedded database without
`AGENTFLOW_SECRET_KEYS`, the dev keys kept in `AGENTFLOW_HOME` (the keys a process that started
the embedded database itself would use). On exit it stops what it started (Valkey, then
PostgreSQL), after the server processes have stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pydantic import SecretStr

from agentflow_grpc.config import Settings


@dataclass(frozen=True, slots=True)
class Backends:
    settings: Settings  # as the server processes see them: the URLs and keys filled in
    environment: dict[str, str] = field(repr=False)  # what their environment adds to ours
    database_embedded: bool  # the embedded PostgreSQL under AGENTFLOW_HOME, started here
    redis_embedded: bool  # the embedded Valkey under AGENTFLOW_HOME, started here

    @property
    def labels(self) -> tuple[str, str]:
        return backend_labels(self.database_embedded, self.redis_embedded)


def backend_labels(database_embedded: bool, redis_embedded: bool) -> tuple[str, str]:
    """How `serve` and `dev` name the database and Redis they use."""
    return (
        "embedded PostgreSQL" if database_embedded else "DATABASE_URL",
        "embedded Valkey" if redis_embedded else "REDIS_URL",
    )


@asynccontextmanager
async def shared_backends(settings: Settings, *, migrate: bool) -> AsyncIterator[Backends]:
    """The database and Redis of the server processes, started here when not given; see the
    module doc. A ConfigurationError (no keys for a `DATABASE_URL`) comes before anything
    starts."""
    from agentflow_grpc.app import DEV_KEY_FILE, database_dsn, load_keyring, redis_url
    from agentflow_grpc.storage import migrations

    embedded = settings.database_url is None
    # As every server process would, once: refuses a DATABASE_URL without keys; for the
    # embedded database, makes the dev keys on first start.
    load_keyring(settings, embedded=embedded)
    async with (
        database_dsn(settings) as (dsn, database_embedded),
        redis_url(settings) as (
            url,
            redis_embedded,
        ),
    ):
        if migrate:
            await migrations.upgrade(dsn)
        environment: dict[str, str] = {}
        given: dict[str, SecretStr] = {}
        if database_embedded:
            environment["DATABASE_URL"] = dsn
            given["database_url"] = SecretStr(dsn)
            if settings.secret_keys is None:
                keys = (settings.home / DEV_KEY_FILE).read_text(encoding="utf-8").strip()
                environment["AGENTFLOW_SECRET_KEYS"] = keys
                given["secret_keys"] = SecretStr(keys)
        if redis_embedded:
            environment["REDIS_URL"] = url
            given["redis_url"] = SecretStr(url)
        yield Backends(
            settings=settings.model_copy(update=given),
            environment=environment,
            database_embedded=database_embedded,
            redis_embedded=redis_embedded,
        )

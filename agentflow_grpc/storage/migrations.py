"""Apply the Alembic revisions in `migrations/` to a database (`agentflow migrate`).

Alembic needs a SQLAlchemy connection; it gets one over asyncpg (SQLAlchemy's asyncpg dialect
with our own `asyncpg.connect`), so the project has one PostgreSQL driver. The whole upgrade runs
in one transaction holding an advisory lock: replicas starting together migrate once, and a
failed revision leaves the schema as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import sqlparse
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from agentflow_grpc.model.errors import ConfigurationError, UnavailableError

MIGRATIONS_DIRECTORY = Path(__file__).resolve().parents[2] / "migrations"
# Any constant will do, as long as it is ours: pg_advisory_xact_lock is per database.
_LOCK_KEY = 0x41_46_4C_4F_57  # "AFLOW"


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    current: str | None  # None: nothing applied
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def execute_script(sql: str) -> None:
    """Run several SQL statements from a migration (`op.execute` takes one at a time over
    asyncpg, which prepares each); split as PostgreSQL would, dollar-quoted bodies kept whole."""
    from alembic import op

    for statement in sqlparse.split(sql):
        if statement.strip():
            op.execute(statement)


def alembic_config() -> Config:
    if not (MIGRATIONS_DIRECTORY / "env.py").is_file():
        raise ConfigurationError(f"no migrations found at {MIGRATIONS_DIRECTORY}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise ConfigurationError(f"no revisions in {MIGRATIONS_DIRECTORY / 'versions'}")
    return head


async def upgrade(dsn: str, revision: str = "head") -> MigrationStatus:
    await _run(dsn, command.upgrade, revision)
    return await status(dsn)


async def downgrade(dsn: str, revision: str) -> MigrationStatus:
    await _run(dsn, command.downgrade, revision)
    return await status(dsn)


async def migrate_to(dsn: str, target: str) -> MigrationStatus:
    """Upgrade or downgrade, whichever reaches `target` (`head`, an id, `+N`, `-N`, `base`)."""
    current = (await status(dsn)).current
    if _goes_forward(current, target):
        return await upgrade(dsn, target)
    return await downgrade(dsn, target)


def _goes_forward(current: str | None, target: str) -> bool:
    if target == "base" or target.startswith("-"):
        return False
    if target == "head" or target.startswith("+") or current is None:
        return True
    script = ScriptDirectory.from_config(alembic_config())
    try:
        wanted = script.get_revision(target)
    except CommandError as exc:
        raise ConfigurationError(f"cannot migrate to revision {target!r}: {exc}") from None
    if wanted is None:
        return False
    # Forward when the current revision is the target or one of its ancestors.
    return current in {rev.revision for rev in script.iterate_revisions(wanted.revision, "base")}


async def status(dsn: str) -> MigrationStatus:
    engine = _engine(dsn)
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    except (OSError, asyncpg.PostgresError) as exc:
        raise UnavailableError(f"cannot connect to PostgreSQL: {exc}") from None
    finally:
        await engine.dispose()
    return MigrationStatus(current=current, head=head_revision())


async def _run(dsn: str, alembic_command: Any, revision: str) -> None:
    config = alembic_config()
    engine = _engine(dsn)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})

            def run(sync_connection: Any) -> None:
                config.attributes["connection"] = sync_connection
                alembic_command(config, revision)

            await connection.run_sync(run)
    except (OSError, asyncpg.PostgresConnectionError) as exc:
        raise UnavailableError(f"cannot connect to PostgreSQL: {exc}") from None
    except CommandError as exc:  # an unknown target, or `+1`/`-1` past either end
        raise ConfigurationError(f"cannot migrate to revision {revision!r}: {exc}") from None
    finally:
        await engine.dispose()


def _engine(dsn: str) -> Any:
    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(dsn)

    return create_async_engine(
        "postgresql+asyncpg://", async_creator=connect, poolclass=pool.NullPool
    )

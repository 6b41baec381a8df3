"""The tests' MariaDB (the session fixture `mariadb`, tests/support/mariadb_fixtures.py): sources
on it, reading it from outside a workflow, and the warehouse script it is loaded with
(tests/support/warehouse_mysql.sql).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncmy

from agentflow_grpc.devstack.mariadb import MariaDBEndpoint
from agentflow_grpc.model.sources import SourceDefinition

WAREHOUSE_SQL = Path(__file__).resolve().parent / "warehouse_mysql.sql"


def mysql_source(endpoint: MariaDBEndpoint, name: str = "db", **config: Any) -> SourceDefinition:
    """A `mysql` source on the session's MariaDB, with its password."""
    return SourceDefinition(
        name=name,
        type="mysql",
        config={"dsn": endpoint.dsn, **config},
        secrets={"password": endpoint.password},
    )


async def connect(endpoint: MariaDBEndpoint) -> asyncmy.Connection:
    """A connection of the test's own (autocommit), outside any source."""
    return await asyncmy.connect(
        host=endpoint.host,
        port=endpoint.port,
        user=endpoint.user,
        password=endpoint.password,
        database=endpoint.database,
        autocommit=True,
    )


async def fetch_value(endpoint: MariaDBEndpoint, query: str, *args: Any) -> Any:
    """The first column of the first row of `query` (`%s` placeholders), read from outside."""
    connection = await connect(endpoint)
    try:
        async with connection.cursor() as cursor:
            await cursor.execute(query, args or None)
            row = await cursor.fetchone()
            return None if row is None else row[0]
    finally:
        await connection.ensure_closed()


async def run_script(endpoint: MariaDBEndpoint, script: str) -> None:
    connection = await connect(endpoint)
    try:
        async with connection.cursor() as cursor:
            await cursor.execute(script)  # asyncmy sends it as one multi-statement query
            while await cursor.nextset():
                pass
    finally:
        await connection.ensure_closed()

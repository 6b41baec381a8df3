"""A real MariaDB for the tests (a pytest plugin, loaded by tests/conftest.py).

`mariadb`: Debian's mariadb-server for the session, started by the product's own
`agentflow_grpc.devstack.mariadb.MariaDBServer` (what `agentflow dev --mysql` runs) in a temporary
directory, on 127.0.0.1 at a port picked at run time, with the database `warehouse` (the tables
of tests/support/warehouse_mysql.sql) and the user `analyst`; stopped and deleted after the
session. Without mariadb-server installed it fails, saying that `make mariadb` installs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from agentflow_grpc.devstack.mariadb import MariaDBEndpoint, MariaDBServer
from agentflow_grpc.model.errors import ConfigurationError
from support.mariadb import WAREHOUSE_SQL, run_script


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBEndpoint]:
    server = MariaDBServer(
        tmp_path_factory.mktemp("mariadb"), database="warehouse", user="analyst", delete=True
    )
    try:
        endpoint = server.start()
    except ConfigurationError as exc:
        server.stop()
        pytest.fail(f"the tests' MariaDB did not start: {exc.message}", pytrace=False)
    try:
        asyncio.run(run_script(endpoint, WAREHOUSE_SQL.read_text(encoding="utf-8")))
        yield endpoint
    finally:
        server.stop()

"""The `mysql` source's pure parts: its DSN, what it says to each server, TIME and JSON values.

The live behaviour is in the conformance suite (tests/sources/test_conformance.py, TestMySQL)
and tests/nodes/test_database_node_mysql.py, against a real MariaDB; the MySQL-only choices
(`max_execution_time`), which the tests' server cannot show, are pinned here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agentflow_grpc.model.errors import SourceConfigError
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources import mysql


def open_source(dsn: str) -> mysql.MySQLSource:
    return mysql.MySQLAdapter().open(SourceDefinition(name="m", type="mysql", config={"dsn": dsn}))


@pytest.mark.parametrize(
    ("dsn", "address"),
    [
        ("mysql://ana@db.internal/sales", ("mysql", "db.internal", 3306, "ana", "sales")),
        ("mariadb://ana@10.0.0.5:3307", ("mariadb", "10.0.0.5", 3307, "ana", None)),
        ("MySQL://ana%40corp@[::1]:3306/", ("mysql", "::1", 3306, "ana@corp", None)),
    ],
)
def test_dsns_that_are_read(dsn: str, address: tuple[Any, ...]) -> None:
    assert mysql._Address.of(dsn) == mysql._Address(*address)


@pytest.mark.parametrize(
    ("dsn", "said"),
    [
        ("postgresql://ana@db/sales", "mysql:// or mariadb://"),
        ("mysql://ana:s3cret@db/sales", "password"),
        ("mysql://db/sales", "no user"),
        ("mysql://ana@:3306/sales", "no host"),
        ("mysql://ana@db:99999/sales", "valid port"),
        ("mysql://ana@db/sales?ssl=true", "no options"),
        ("mysql://ana@db/sales%2Feu", "database"),
    ],
)
def test_dsns_that_are_refused_say_why_and_never_echo_a_password(dsn: str, said: str) -> None:
    with pytest.raises(SourceConfigError) as caught:
        open_source(dsn)
    assert "config.dsn" in caught.value.message
    assert said in caught.value.message
    assert "s3cret" not in caught.value.message


def test_mariadb_bounds_every_statement_and_mysql_its_selects() -> None:
    mariadb = mysql._session_setup("mariadb", True, 101, 0.0004)
    assert mariadb == (
        "SET SESSION TRANSACTION READ ONLY; "
        "SET SESSION max_statement_time = 0.000400, SESSION sql_select_limit = 101; "
        "START TRANSACTION READ ONLY"
    )
    assert mysql._session_setup("mysql", False, 11, 0.0004) == (
        "SET SESSION TRANSACTION READ WRITE; "
        "SET SESSION max_execution_time = 1, SESSION sql_select_limit = 11; "
        "START TRANSACTION READ WRITE"
    )
    assert "max_execution_time = 2500," in mysql._session_setup("mysql", True, 2, 2.5)


@pytest.mark.parametrize(
    ("handshake", "version", "system", "product"),
    [
        (
            "5.5.5-10.11.6-MariaDB-0+deb12u1",
            "10.11.6-MariaDB-0+deb12u1",
            "mariadb",
            "MariaDB 10.11.6",
        ),
        ("8.0.36", "8.0.36", "mysql", "MySQL 8.0.36"),
        ("8.4.0-log", "8.4.0-log", "mysql", "MySQL 8.4.0"),
    ],
)
def test_the_server_says_which_it_is(
    handshake: str, version: str, system: str, product: str
) -> None:
    assert mysql._system_of(handshake) == system
    assert mysql._product(version) == product


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.timedelta(hours=12, minutes=34, seconds=56), "12:34:56"),
        (dt.timedelta(seconds=5, microseconds=500000), "00:00:05.500000"),
        (dt.timedelta(0), "00:00:00"),
        (dt.timedelta(hours=100), "100:00:00"),
        (dt.timedelta(hours=-1, microseconds=-500000), "-01:00:00.500000"),
        (dt.timedelta(hours=-838, minutes=-59, seconds=-59), "-838:59:59"),
        (None, None),
    ],
)
def test_a_time_reads_as_a_time_of_day_or_as_mysql_writes_it(
    value: dt.timedelta | None, expected: str | None
) -> None:
    assert mysql._time_value(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"a": [1, 2.5, null]}', {"a": [1, 2.5, None]}),
        (b'"text"', "text"),
        ("not json", "not json"),
        (None, None),
    ],
)
def test_a_json_column_reads_as_its_value(value: Any, expected: Any) -> None:
    assert mysql._json_value(value) == expected


def test_parameters_are_sent_as_the_binary_protocol_takes_them() -> None:
    assert mysql._convert([True, False, 2**64 - 1, -(2**63), [1, "a"], {"k": None}, "x", None]) == [
        1,
        0,
        2**64 - 1,
        -(2**63),
        '[1, "a"]',
        '{"k": null}',
        "x",
        None,
    ]
    with pytest.raises(NodeFailure) as caught:
        mysql._convert(["a", 2**64])
    assert (caught.value.code, caught.value.retryable) == ("database.invalid_parameter", False)
    assert "parameter 2" in caught.value.message

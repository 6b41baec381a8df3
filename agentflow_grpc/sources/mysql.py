"""MySQL and MariaDB sources: one asyncmy connection pool per source, opened on first use.

Every statement is a server-side prepared statement (COM_STMT_PREPARE / COM_STMT_EXECUTE): the
query's `?` placeholders are the server's own, and the parameters travel beside the SQL text in
the binary protocol, never inside it, so an injection attempt is only ever a value. The query is
prepared exactly as written (one statement: the server refuses two).

Each statement runs in a transaction that is read-only unless the node says otherwise; the
session is made read-only as well, so that a DDL statement cannot escape through the implicit
commit MySQL makes before it. Its time is bounded by `max_statement_time` on MariaDB (any
statement) and by `max_execution_time` on MySQL (which bounds only SELECT: a write there runs
until the node's own `timeout`). `sql_select_limit` keeps the server from sending more than
`max_rows + 1` rows of a SELECT without a LIMIT of its own; past `max_rows`, `truncated` is set.

Values map to JSON as PostgreSQL's do (`sql_values.to_json_value`): a TIME becomes `HH:MM:SS`,
a JSON column its decoded value. MySQL marks JSON columns in the result; MariaDB stores JSON as
LONGTEXT with a `json_valid()` check, so a text column of a table in the source's database whose
check is `json_valid(column)` is decoded too (read from information_schema, kept a minute).
A JSON value that MariaDB computes (`JSON_OBJECT(…)`) comes back as text.

Each statement is a CLIENT span (OpenTelemetry's database conventions): `db.system.name`
(`mariadb` or `mysql`, as the server says), `db.operation.name` (the statement's first keyword),
`db.namespace` (the database), `server.address`/`server.port`, the rows returned; the statement's
text only when AGENTFLOW_TRACE_CONTENT allows it, and never the parameters or the password.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

import asyncmy
from asyncmy import errors as mysql_errors
from asyncmy.constants import FIELD_TYPE
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability import spans
from agentflow_grpc.sources.base import QueryResult, parse_config
from agentflow_grpc.sources.sql_values import to_json_value

System = Literal["mysql", "mariadb"]
DEFAULT_PORT = 3306
_SCHEMES: dict[str, System] = {"mysql": "mysql", "mariadb": "mariadb"}


class MySQLConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dsn: str = Field(
        min_length=1,
        description="mysql://user@host:port/database (or mariadb://…; no password: it is the "
        "`password` secret).",
    )
    min_pool_size: int = Field(0, ge=0, le=100)
    max_pool_size: int = Field(10, ge=1, le=100)
    connect_timeout: float = Field(10.0, gt=0, le=300)
    charset: str = Field("utf8mb4", pattern=r"^[A-Za-z0-9_]{1,32}$")

    @field_validator("dsn")
    @classmethod
    def _dsn_is_usable(cls, dsn: str) -> str:
        _Address.of(dsn)  # raises ValueError, which pydantic reports against `config.dsn`
        return dsn


@dataclass(frozen=True, slots=True)
class _Address:
    """Where a DSN points: never its password (a DSN with one is refused)."""

    scheme: System
    host: str
    port: int
    user: str
    database: str | None

    @classmethod
    def of(cls, dsn: str) -> _Address:
        try:
            parts = urlsplit(dsn)
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError("is not a URL with a valid port: mysql://user@host:port/db") from None
        scheme = _SCHEMES.get(parts.scheme.lower())
        if scheme is None:
            raise ValueError("must start with mysql:// or mariadb://")
        if parts.password is not None:
            raise ValueError("holds a password; give it as the `password` secret instead")
        if not parts.hostname:
            raise ValueError("names no host: mysql://user@host:port/db")
        if not parts.username:
            raise ValueError("names no user: mysql://user@host:port/db")
        if parts.query or parts.fragment:
            raise ValueError("takes no options after `?` or `#`; use the config's fields")
        database = unquote(parts.path.lstrip("/")) or None
        if database is not None and "/" in database:
            raise ValueError("names a database with a `/` in it")
        return cls(scheme, parts.hostname, port, unquote(parts.username), database)


@dataclass(frozen=True, slots=True)
class MySQLAdapter:
    type_name: str = "mysql"

    def open(self, definition: SourceDefinition) -> MySQLSource:
        config = parse_config(MySQLConfig, definition)
        password = definition.secrets.get("password")
        return MySQLSource(definition, config, password.get_secret_value() if password else None)


# Error numbers (the server's ER_* and the client's CR_* codes).
_STATEMENT_TIMEOUT = frozenset({1969, 3024})  # MariaDB max_statement_time, MySQL max_execution_time
_READ_ONLY_TRANSACTION = 1792
# Too many connections, shutting down, connection killed; 2000-2999 are the client's own
# (cannot connect, server gone away, lost connection…).
_UNAVAILABLE = frozenset({1040, 1053, 1927})
_RETRYABLE = frozenset({1205, 1213})  # lock wait timeout, deadlock
_BINARY_CHARSET = 63
_TEXT_TYPE_CODES = frozenset(
    {
        FIELD_TYPE.VARCHAR,
        FIELD_TYPE.VAR_STRING,
        FIELD_TYPE.STRING,
        FIELD_TYPE.TINY_BLOB,
        FIELD_TYPE.MEDIUM_BLOB,
        FIELD_TYPE.LONG_BLOB,
        FIELD_TYPE.BLOB,
    }
)
_JSON_CHECK = re.compile(r"json_valid\(`((?:[^`]|``)+)`\)", re.IGNORECASE)
_JSON_COLUMNS_QUERY = (
    "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
    "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = ? LIMIT 10000"
)
JSON_COLUMNS_TTL = 60.0  # seconds a table's JSON columns are kept before they are read again


class MySQLSource:
    def __init__(
        self, definition: SourceDefinition, config: MySQLConfig, password: str | None
    ) -> None:
        self.definition = definition
        self._config = config
        self._password = password
        self._address = _Address.of(config.dsn)
        self._system: System = self._address.scheme  # until a server says which it is
        self._pool: asyncmy.Pool | None = None
        self._lock = asyncio.Lock()
        self._json_columns: dict[str, tuple[float, frozenset[str]]] = {}

    def __repr__(self) -> str:
        address = self._address
        return f"MySQLSource({self.definition.name!r}, {address.host}:{address.port})"

    async def _get_pool(self) -> asyncmy.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    address = self._address
                    # The pool makes its `min_pool_size` connections now, one by one.
                    connecting = self._config.connect_timeout * max(1, self._config.min_pool_size)
                    try:
                        async with asyncio.timeout(connecting):
                            self._pool = await asyncmy.create_pool(
                                minsize=self._config.min_pool_size,
                                maxsize=self._config.max_pool_size,
                                host=address.host,
                                port=address.port,
                                user=address.user,
                                password=self._password or "",
                                database=address.database,
                                charset=self._config.charset,
                                connect_timeout=self._config.connect_timeout,
                                autocommit=True,
                            )
                    except (TimeoutError, OSError, mysql_errors.MySQLError) as exc:
                        raise self._cannot_connect(exc) from exc
        return self._pool

    async def _acquire(self, pool: asyncmy.Pool) -> asyncmy.Connection:
        """A pooled connection. One that must be made is bounded by `connect_timeout` as a
        whole: asyncmy's own bounds the TCP connect alone, and a server that accepts and never
        greets would hold the node until its timeout. Waiting for a busy pool is not bounded."""
        connecting = pool.freesize == 0 and pool.size < pool.maxsize
        try:
            async with asyncio.timeout(self._config.connect_timeout if connecting else None):
                connection: asyncmy.Connection = await pool.acquire()
        except (TimeoutError, OSError, mysql_errors.MySQLError) as exc:
            raise self._cannot_connect(exc) from exc
        return connection

    def _cannot_connect(self, exc: BaseException) -> NodeFailure:
        return NodeFailure(
            "database.unavailable",
            f"cannot connect to source {self.definition.name!r}: {_describe(exc)}",
            retryable=True,
        )

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        self._json_columns.clear()
        if pool is not None:
            pool.close()
            await pool.wait_closed()

    async def check(self) -> str:
        result = await self.fetch(
            "SELECT VERSION() AS version", (), read_only=True, max_rows=1, statement_timeout=10
        )
        return f"connected: {_product(str(result.rows[0]['version']))}"

    async def fetch(
        self,
        query: str,
        params: Sequence[Any],
        *,
        read_only: bool,
        max_rows: int,
        statement_timeout: float,
    ) -> QueryResult:
        operation = _operation_name(query)
        attributes: dict[str, spans.AttributeValue] = {
            "db.system.name": self._system,
            "server.address": self._address.host,
            "server.port": self._address.port,
            "db.operation.name": operation,
        }
        if self._address.database:
            attributes["db.namespace"] = self._address.database
        if spans.content_enabled():
            attributes["db.query.text"] = query
        namespace = self._address.database
        name = f"{operation} {namespace}" if namespace else operation
        with spans.span(name, kind=spans.SpanKind.CLIENT, attributes=attributes) as span:
            try:
                result = await self._fetch(
                    query,
                    params,
                    read_only=read_only,
                    max_rows=max_rows,
                    statement_timeout=statement_timeout,
                )
            finally:
                span.set_attribute("db.system.name", self._system)  # as the server said
            span.set_attribute("db.response.returned_rows", len(result.rows))
            return result

    async def _fetch(
        self,
        query: str,
        params: Sequence[Any],
        *,
        read_only: bool,
        max_rows: int,
        statement_timeout: float,
    ) -> QueryResult:
        values = _convert(params)
        pool = await self._get_pool()
        connection = await self._acquire(pool)
        try:
            self._system = _system_of(connection.get_server_info())
            return await self._run(
                connection,
                query,
                values,
                read_only=read_only,
                max_rows=max_rows,
                statement_timeout=statement_timeout,
            )
        except mysql_errors.MySQLError as exc:
            raise _failure(exc) from exc
        except (OSError, RuntimeError) as exc:
            # OSError includes a timeout; asyncmy raises RuntimeError on a transport it closed.
            raise NodeFailure(
                "database.unavailable", f"lost the database connection: {exc}", retryable=True
            ) from exc
        finally:
            pool.release(connection)  # one with a transaction still open is closed, not kept

    async def _run(
        self,
        connection: asyncmy.Connection,
        query: str,
        values: list[Any],
        *,
        read_only: bool,
        max_rows: int,
        statement_timeout: float,
    ) -> QueryResult:
        try:
            cursor = connection.cursor()
            await cursor.execute(
                _session_setup(self._system, read_only, max_rows + 1, statement_timeout)
            )
            while await cursor.nextset():
                pass
            await cursor.close()
            statement = await _prepare(connection, query)
            try:
                if statement.parameter_count != len(values):
                    raise NodeFailure(
                        "database.invalid_parameter",
                        f"the statement has {statement.parameter_count} ? placeholder(s) but "
                        f"{len(values)} parameter(s) were given",
                    )
                result = await statement.execute(values)
            finally:
                await statement.close()
            fields = list(result.fields or ()) if result.field_count else []
            records: tuple[tuple[Any, ...], ...] = result.rows or ()
            json_columns = set()
            if records and self._system == "mariadb":
                json_columns = await self._mariadb_json_columns(connection, fields)
            await connection.commit()
        except mysql_errors.MySQLError as exc:
            await _roll_back(connection, exc)
            raise
        except NodeFailure:
            await _roll_back(connection, None)
            raise
        except BaseException:  # cancelled mid-statement, or the transport broke: drop it
            connection.close()
            raise
        readers = [
            _reader(field, json_column=index in json_columns) for index, field in enumerate(fields)
        ]
        columns = [field.name for field in fields]
        rows = [
            {
                column: read(value)
                for column, read, value in zip(columns, readers, record, strict=True)
            }
            for record in records[:max_rows]
        ]
        return QueryResult(columns, rows, truncated=len(records) > max_rows)

    async def _mariadb_json_columns(
        self, connection: asyncmy.Connection, fields: list[Any]
    ) -> set[int]:
        """The positions of the result's columns that are JSON columns of a table."""
        tables = {
            field.org_table
            for field in fields
            if field.type_code in _TEXT_TYPE_CODES
            and field.charsetnr != _BINARY_CHARSET
            and field.org_table
            and field.org_name
        }
        if not tables:
            return set()
        declared = {table: await self._json_columns_of(connection, table) for table in tables}
        return {
            index
            for index, field in enumerate(fields)
            if field.org_name in declared.get(field.org_table, frozenset())
        }

    async def _json_columns_of(self, connection: asyncmy.Connection, table: str) -> frozenset[str]:
        kept = self._json_columns.get(table)
        now = time.monotonic()
        if kept is not None and now - kept[0] < JSON_COLUMNS_TTL:
            return kept[1]
        statement = await _prepare(connection, _JSON_COLUMNS_QUERY)
        try:
            result = await statement.execute((table,))
        finally:
            await statement.close()
        columns = frozenset(
            found.group(1).replace("``", "`")
            for (clause,) in result.rows or ()
            if isinstance(clause, str) and (found := _JSON_CHECK.fullmatch(clause.strip()))
        )
        self._json_columns[table] = (now, columns)
        return columns


class _Statement(Protocol):
    """What is used of asyncmy's PreparedStatement (its stub leaves it untyped)."""

    @property
    def parameter_count(self) -> int: ...

    async def execute(self, args: Sequence[Any]) -> Any: ...

    async def close(self) -> None: ...


async def _prepare(connection: asyncmy.Connection, query: str) -> _Statement:
    """A server-side prepared statement of `query`, exactly as written."""
    prepare: Callable[[str], Awaitable[_Statement]] = connection.prepare
    return await prepare(query)


async def _roll_back(connection: asyncmy.Connection, exc: mysql_errors.MySQLError | None) -> None:
    """End the failed statement's transaction; a connection that cannot is closed (the pool then
    drops it)."""
    if exc is not None and not _is_server_error(exc):
        connection.close()
        return
    try:
        await connection.rollback()
    except (mysql_errors.MySQLError, OSError, RuntimeError):
        connection.close()


def _is_server_error(exc: mysql_errors.MySQLError) -> bool:
    """The server refused the statement and the connection is fine (not a client-side error)."""
    errno = _errno(exc)
    return errno is not None and 1000 <= errno < 2000 and errno not in _UNAVAILABLE


def _errno(exc: mysql_errors.MySQLError) -> int | None:
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, mysql_errors.MySQLError) and len(exc.args) >= 2:
        return f"({exc.args[0]}) {exc.args[1]}"
    if isinstance(exc, TimeoutError):
        return "no answer within connect_timeout"
    return str(exc) or type(exc).__name__


def _failure(exc: mysql_errors.MySQLError) -> NodeFailure:
    errno = _errno(exc)
    message = _describe(exc)
    if (
        isinstance(exc, mysql_errors.InterfaceError)
        or errno in _UNAVAILABLE
        or (errno is not None and 2000 <= errno < 3000)
        or not errno
    ):
        return NodeFailure(
            "database.unavailable", f"lost the database connection: {message}", retryable=True
        )
    if errno in _STATEMENT_TIMEOUT:
        return NodeFailure(
            "database.statement_timeout", "the statement ran past its timeout", retryable=True
        )
    if errno == _READ_ONLY_TRANSACTION:
        return NodeFailure(
            "database.read_only", f"the statement writes in a read-only transaction: {message}"
        )
    return NodeFailure(
        f"database.mysql_{errno}", f"{type(exc).__name__}: {message}", retryable=errno in _RETRYABLE
    )


def _session_setup(system: System, read_only: bool, row_limit: int, timeout: float) -> str:
    """One round trip before the statement: the session's and the transaction's access mode, the
    statement timeout and the row cap, then the transaction. Numbers only: nothing of the node's."""
    access = "READ ONLY" if read_only else "READ WRITE"
    if system == "mariadb":
        limit = f"max_statement_time = {max(timeout, 0.000001):.6f}"  # seconds; 0 is no limit
    else:
        limit = f"max_execution_time = {max(1, math.ceil(timeout * 1000))}"  # ms, SELECT only
    return (
        f"SET SESSION TRANSACTION {access}; "
        f"SET SESSION {limit}, SESSION sql_select_limit = {int(row_limit)}; "
        f"START TRANSACTION {access}"
    )


def _system_of(server_info: str) -> System:
    """MariaDB says so in its version (`5.5.5-10.11.6-MariaDB-…`); anything else is MySQL."""
    return "mariadb" if "mariadb" in server_info.lower() else "mysql"


def _product(version: str) -> str:
    """`MariaDB 10.11.6` or `MySQL 8.0.36`, from what VERSION() says."""
    number = version.split("-", 1)[0]
    return f"MariaDB {number}" if "mariadb" in version.lower() else f"MySQL {number}"


_FIRST_KEYWORD = re.compile(
    r"(?:\s+|\(|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|/\*.*?\*/)*([A-Za-z]+)", re.DOTALL
)


@functools.lru_cache(maxsize=512)
def _operation_name(query: str) -> str:
    """The statement's first keyword (`SELECT`, `WITH`, `INSERT`, …), after comments."""
    found = _FIRST_KEYWORD.match(query)
    return found.group(1).upper() if found else "mysql"


_INT_RANGE = range(-(2**63), 2**64)


def _convert(params: Sequence[Any]) -> list[Any]:
    """Parameters as the binary protocol sends them: lists and objects as JSON text (MySQL's
    JSON functions and columns read it), booleans as 1 and 0."""
    values: list[Any] = []
    for index, value in enumerate(params, start=1):
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, int) and value not in _INT_RANGE:
            raise NodeFailure(
                "database.invalid_parameter",
                f"parameter {index} is {value}, which does not fit in 64 bits",
            )
        elif isinstance(value, dict | list | tuple):
            value = json.dumps(value)
        values.append(value)
    return values


def _reader(field: Any, *, json_column: bool) -> Callable[[Any], Any]:
    if json_column or field.type_code == FIELD_TYPE.JSON:
        return _json_value
    if field.type_code == FIELD_TYPE.TIME:
        return _time_value
    return to_json_value


def _json_value(value: Any) -> Any:
    """A JSON column's text as its value (text that is not JSON stays text)."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if not isinstance(value, str):
        return to_json_value(value)
    try:
        return to_json_value(json.loads(value))
    except ValueError:
        return value


_DAY = dt.timedelta(days=1)


def _time_value(value: Any) -> Any:
    """A TIME (asyncmy's timedelta) as PostgreSQL's `time` reads: `12:30:05[.500000]`; one
    outside a day (TIME spans ±838 hours) as MySQL writes it: `-01:00:00`, `100:00:00`."""
    if not isinstance(value, dt.timedelta):
        return to_json_value(value)
    if dt.timedelta(0) <= value < _DAY:
        return (dt.datetime.min + value).time().isoformat()
    sign = "-" if value < dt.timedelta(0) else ""
    magnitude = abs(value)
    hours, rest = divmod(magnitude.days * 86400 + magnitude.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    fraction = f".{magnitude.microseconds:06d}" if magnitude.microseconds else ""
    return f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}{fraction}"


ADAPTERS = (MySQLAdapter(),)

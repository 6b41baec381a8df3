"""PostgreSQL sources: one asyncpg connection pool per source, opened on first use.

Queries run with bind parameters only, inside a transaction that is read-only unless the node
says otherwise, under a `statement_timeout`, and fetch at most `max_rows` rows through a cursor.
Parameter values rendered from templates arrive as text; they are converted to the type
PostgreSQL infers for each placeholder (`$1::date` gets a `date`). Single-expression templates
keep their type (`{{ inputs.limit }}` stays an integer); numbers bound to a text placeholder are
sent as their text. `json`/`jsonb` values come back decoded, not as JSON text.

Each statement is a CLIENT span (OpenTelemetry's database conventions): `db.system.name`
`postgresql`, `db.operation.name` (the statement's first keyword), `db.namespace` (the
database), `server.address`/`server.port`, the rows returned; the statement's text only when
AGENTFLOW_TRACE_CONTENT allows it, and never the parameters, the DSN or the password.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import functools
import json
import math
import re
import uuid
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability import spans
from agentflow_grpc.sources.base import QueryResult, parse_config
from agentflow_grpc.sources.sql_values import to_json_value as to_json_value


class PostgresConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dsn: str = Field(min_length=1, description="postgresql://user@host:port/db (no password).")
    min_pool_size: int = Field(0, ge=0, le=100)
    max_pool_size: int = Field(10, ge=1, le=100)
    connect_timeout: float = Field(10.0, gt=0)


@dataclass(frozen=True, slots=True)
class PostgresAdapter:
    type_name: str = "postgres"

    def open(self, definition: SourceDefinition) -> PostgresSource:
        config = parse_config(PostgresConfig, definition)
        password = definition.secrets.get("password")
        return PostgresSource(definition, config, password.get_secret_value() if password else None)


_BOOLEANS = {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}

# Text → the Python value asyncpg's codec expects, by PostgreSQL type name.
_FROM_TEXT: dict[str, Callable[[str], Any]] = {
    "int2": int,
    "int4": int,
    "int8": int,
    "oid": int,
    "float4": float,
    "float8": float,
    "numeric": decimal.Decimal,
    "bool": lambda text: _BOOLEANS[text.strip().lower()],
    "date": dt.date.fromisoformat,
    "timestamp": dt.datetime.fromisoformat,
    "timestamptz": dt.datetime.fromisoformat,
    "time": dt.time.fromisoformat,
    "uuid": uuid.UUID,
}

_TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "name"})

_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "57014", "53300", "57P03"})
# The connection is gone (class 08) or the server is shutting it down: another one may work.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
# asyncpg raises DataError with this message when it cannot encode a bind parameter.
_ARGUMENT_ERROR = "invalid input for query argument"


async def _init_connection(connection: asyncpg.Connection) -> None:
    """Decode json/jsonb into Python values; parameters arrive as JSON text (see `_convert`)."""
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, schema="pg_catalog", encoder=str, decoder=json.loads, format="text"
        )


class PostgresSource:
    def __init__(
        self, definition: SourceDefinition, config: PostgresConfig, password: str | None
    ) -> None:
        self.definition = definition
        self._config = config
        self._password = password
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self._span_attributes = _database_attributes(config.dsn)

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    try:
                        self._pool = await asyncpg.create_pool(
                            self._config.dsn,
                            password=self._password,
                            min_size=self._config.min_pool_size,
                            max_size=self._config.max_pool_size,
                            timeout=self._config.connect_timeout,
                            init=_init_connection,
                        )
                    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                        raise NodeFailure(
                            "database.unavailable",
                            f"cannot connect to source {self.definition.name!r}: {exc}",
                            retryable=True,
                        ) from exc
        return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def check(self) -> str:
        result = await self.fetch(
            "SELECT version()", (), read_only=True, max_rows=1, statement_timeout=10
        )
        return f"connected: {result.rows[0]['version'].split(' on ')[0]}"

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
            **self._span_attributes,
            "db.operation.name": operation,
        }
        if spans.content_enabled():
            attributes["db.query.text"] = query
        namespace = self._span_attributes.get("db.namespace")
        name = f"{operation} {namespace}" if namespace else operation
        with spans.span(name, kind=spans.SpanKind.CLIENT, attributes=attributes) as span:
            result = await self._fetch(
                query,
                params,
                read_only=read_only,
                max_rows=max_rows,
                statement_timeout=statement_timeout,
            )
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
        pool = await self._get_pool()
        try:
            async with pool.acquire() as connection, connection.transaction(readonly=read_only):
                await connection.execute(
                    "SELECT set_config('statement_timeout', $1, true)",
                    # at least 1 ms: 0 would mean no timeout at all
                    f"{max(1, math.ceil(statement_timeout * 1000))}ms",
                )
                statement = await connection.prepare(query)
                values = _convert(
                    params,
                    [t.name for t in statement.get_parameters()],
                    _session_timezone(connection),
                )
                cursor = await statement.cursor(*values)
                records = await cursor.fetch(max_rows + 1)
                columns = [attribute.name for attribute in statement.get_attributes()]
        except asyncpg.PostgresError as exc:
            raise _failure(exc) from exc
        except (OSError, asyncpg.InterfaceError) as exc:
            # OSError includes asyncpg's connect timeout (TimeoutError); a dead connection shows
            # up as InterfaceError when the transaction ends.
            raise NodeFailure(
                "database.unavailable", f"lost the database connection: {exc}", retryable=True
            ) from exc
        rows = [
            {key: to_json_value(value) for key, value in record.items()}
            for record in records[:max_rows]
        ]
        return QueryResult(columns, rows, truncated=len(records) > max_rows)


def _database_attributes(dsn: str) -> dict[str, spans.AttributeValue]:
    """What a span may say about the database of `dsn`: its system, name, host and port (never
    the user, the password or the options)."""
    attributes: dict[str, spans.AttributeValue] = {"db.system.name": "postgresql"}
    try:
        parts = urlsplit(dsn)
        host, port = parts.hostname, parts.port
    except ValueError:
        return attributes
    database = unquote(parts.path.lstrip("/"))
    if database:
        attributes["db.namespace"] = database
    if host:
        attributes["server.address"] = host
        attributes["server.port"] = port or 5432
    return attributes


_FIRST_KEYWORD = re.compile(r"(?:\s+|\(|--[^\n]*(?:\n|$)|/\*.*?\*/)*([A-Za-z]+)", re.DOTALL)


@functools.lru_cache(maxsize=512)
def _operation_name(query: str) -> str:
    """The statement's first keyword (`SELECT`, `WITH`, `INSERT`, …), after comments."""
    found = _FIRST_KEYWORD.match(query)
    return found.group(1).upper() if found else "postgresql"


def _session_timezone(connection: asyncpg.Connection) -> dt.tzinfo | None:
    """The session's TimeZone, in which PostgreSQL reads a timestamptz written without one."""
    name = getattr(connection.get_settings(), "TimeZone", None)
    if not name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None  # a POSIX-style zone zoneinfo cannot read: asyncpg's default (local time)


def _convert(
    params: Sequence[Any], type_names: list[str], timezone: dt.tzinfo | None = None
) -> list[Any]:
    values: list[Any] = []
    for index, (value, type_name) in enumerate(zip(params, type_names, strict=False), start=1):
        if type_name in _TEXT_TYPES and isinstance(value, int | float | decimal.Decimal):
            value = _text_of(value)
        elif isinstance(value, str) and type_name in _FROM_TEXT:
            try:
                value = _FROM_TEXT[type_name](value)
            except (ValueError, KeyError, decimal.InvalidOperation):
                raise NodeFailure(
                    "database.invalid_parameter",
                    f"parameter ${index} is {value!r}, which is not a valid {type_name}",
                ) from None
            if type_name == "timestamptz" and value.tzinfo is None and timezone is not None:
                value = value.replace(tzinfo=timezone)
            elif type_name == "timestamp" and value.tzinfo is not None:
                value = value.replace(tzinfo=None)  # as PostgreSQL does: the offset is ignored
        elif type_name in ("json", "jsonb") and not isinstance(value, str):
            value = json.dumps(value)
        values.append(value)
    return values


def _text_of(value: int | float | decimal.Decimal) -> str:
    """A number (or bool) as PostgreSQL writes it: `true`, `42`, `1.5`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _failure(exc: asyncpg.PostgresError) -> NodeFailure:
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, asyncpg.DataError) and str(exc).startswith(_ARGUMENT_ERROR):
        return NodeFailure("database.invalid_parameter", str(exc))
    if sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES:
        return NodeFailure(
            "database.unavailable", f"lost the database connection: {exc}", retryable=True
        )
    if sqlstate == "57014":
        return NodeFailure(
            "database.statement_timeout", "the statement ran past its timeout", retryable=True
        )
    if sqlstate == "25006":
        return NodeFailure(
            "database.read_only", f"the statement writes in a read-only transaction: {exc}"
        )
    return NodeFailure(
        f"database.sqlstate_{sqlstate.lower() or 'unknown'}",
        f"{type(exc).__name__}: {exc}",
        retryable=sqlstate in _RETRYABLE_SQLSTATES,
    )


ADAPTERS = (PostgresAdapter(),)

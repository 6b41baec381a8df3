"""PostgreSQL sources: one asyncpg connection pool per source, opened on first use.

Queries run with bind parameters only, inside a transaction that is read-only unless the node
says otherwise, under a `statement_timeout`, and fetch at most `max_rows` rows through a cursor.
Parameter values rendered from templates arrive as text; they are converted to the type
PostgreSQL infers for each placeholder (`$1::date` gets a `date`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentflow_grpc.runtime.failures import NodeFailure
from agentflow_grpc.sources.base import QueryResult, SourceDefinition
from agentflow_grpc.sources.registry import SourceConfigError


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
        try:
            config = PostgresConfig.model_validate(definition.config)
        except ValidationError as exc:
            raise SourceConfigError(f"source {definition.name!r}: {exc}") from None
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

_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "57014", "53300", "57P03"})


class PostgresSource:
    def __init__(
        self, definition: SourceDefinition, config: PostgresConfig, password: str | None
    ) -> None:
        self.definition = definition
        self._config = config
        self._password = password
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

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

    async def fetch(
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
                    f"{int(statement_timeout * 1000)}ms",
                )
                statement = await connection.prepare(query)
                values = _convert(params, [t.name for t in statement.get_parameters()])
                cursor = await statement.cursor(*values)
                records = await cursor.fetch(max_rows + 1)
                columns = [attribute.name for attribute in statement.get_attributes()]
        except asyncpg.PostgresError as exc:
            raise _failure(exc) from exc
        except (OSError, asyncpg.InterfaceError) as exc:
            raise NodeFailure(
                "database.unavailable", f"lost the database connection: {exc}", retryable=True
            ) from exc
        rows = [
            {key: to_json_value(value) for key, value in record.items()}
            for record in records[:max_rows]
        ]
        return QueryResult(columns, rows, truncated=len(records) > max_rows)


def _convert(params: Sequence[Any], type_names: list[str]) -> list[Any]:
    values: list[Any] = []
    for index, (value, type_name) in enumerate(zip(params, type_names, strict=False), start=1):
        if isinstance(value, str) and type_name in _FROM_TEXT:
            try:
                value = _FROM_TEXT[type_name](value)
            except (ValueError, KeyError, decimal.InvalidOperation):
                raise NodeFailure(
                    "database.invalid_parameter",
                    f"parameter ${index} is {value!r}, which is not a valid {type_name}",
                ) from None
        elif type_name in ("json", "jsonb") and not isinstance(value, str):
            value = json.dumps(value)
        values.append(value)
    return values


def _failure(exc: asyncpg.PostgresError) -> NodeFailure:
    sqlstate = getattr(exc, "sqlstate", None) or ""
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


def to_json_value(value: Any) -> Any:
    """A database value as JSON: numbers stay numbers, times become ISO 8601 strings."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


ADAPTERS = (PostgresAdapter(),)

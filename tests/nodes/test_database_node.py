"""The database node against a real PostgreSQL: values, bind parameters, guards and failures.

Each test runs a small workflow (input → database node → outputs) through the engine with a
`postgres` source on the embedded warehouse database (tests/support/warehouse.sql). It proves
that rows come back JSON-ready, that template values only ever travel as bind parameters, that
the read-only transaction, `max_rows` and `statement_timeout` hold, that failures carry stable
codes and are retried only when retrying can help, and that the pool is per source and reused.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support.network import closed_port
from support.retries import FAST_RETRY, fast_retry
from support.runs import (
    error_of,
    failed_events,
    output_of,
    run_spec,
    single_node_workflow,
    started_attempts,
    terminal,
    validated,
)

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources.registry import SourceSet
from agentflow_grpc.spec import WorkflowSpec

TWO_ATTEMPTS = fast_retry(2)  # a retryable failure shows once retried, then final
NO_RETRY_NEEDED = FAST_RETRY  # three attempts allowed, one expected


def database_spec(
    query: str,
    params: list[str] | None = None,
    *,
    inputs: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
    **config: Any,
) -> dict[str, Any]:
    """A workflow: input → database node `query` (source `db`) → output `result`."""
    node: dict[str, Any] = {
        "id": "query",
        "type": "database",
        "source": "db",
        "timeout": 30,
        "config": {"query": query, "params": params or [], **config},
    }
    if retry is not None:
        node["retry"] = retry
    return single_node_workflow(node, name="database-test", inputs=inputs)


def postgres_sources(dsn: str, **config: Any) -> SourceSet:
    return SourceSet([SourceDefinition(name="db", type="postgres", config={"dsn": dsn, **config})])


@pytest.fixture
async def sources(warehouse_dsn: str) -> AsyncIterator[SourceSet]:
    source_set = postgres_sources(warehouse_dsn)
    try:
        yield source_set
    finally:
        await source_set.aclose()


async def run_ok(
    engine: ExecutionEngine,
    document: dict[str, Any],
    sources: SourceSet,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run a spec that must succeed; the database node's output."""
    output: dict[str, Any] = output_of(
        await run_spec(engine, validated(document, sources), sources, inputs)
    )
    return output


def failures(events: list[ExecutionEvent]) -> list[tuple[int | None, str, bool]]:
    """(attempt, code, will_retry) of every node_failed event of the database node."""
    return [
        (event.attempt, event.data["code"], event.data["will_retry"])
        for event in failed_events(events, "query")
    ]


def assert_failed_with(events: list[ExecutionEvent], code: str) -> None:
    error = error_of(events)
    assert error["code"] == code, error
    assert error["node_id"] == "query"


async def fetch_value(dsn: str, query: str, *args: Any) -> Any:
    """Read the warehouse from outside the workflow, on a connection of the test's own."""
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(query, *args)
    finally:
        await connection.close()


# --- rows and values ---


async def test_rows_come_back_as_json_ready_dicts(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    output = await run_ok(
        engine,
        database_spec(
            "SELECT order_id, placed_at, placed_at::date AS placed_on, status, "
            "total_cents / 100.0 AS total, total_cents::numeric(12, 2) / 100 AS exact_total "
            "FROM orders WHERE customer_id = 42 ORDER BY order_id"
        ),
        sources,
    )
    assert output["columns"] == [
        "order_id",
        "placed_at",
        "placed_on",
        "status",
        "total",
        "exact_total",
    ]
    assert output["row_count"] == 3
    assert output["truncated"] is False
    assert output["rows"] == [
        {
            "order_id": 1001,
            "placed_at": "2024-02-03T10:00:00+00:00",
            "placed_on": "2024-02-03",
            "status": "shipped",
            "total": 129,
            "exact_total": 129,
        },
        {
            "order_id": 1002,
            "placed_at": "2024-05-17T15:30:00+00:00",
            "placed_on": "2024-05-17",
            "status": "delivered",
            "total": 45.99,
            "exact_total": 45.99,
        },
        {
            "order_id": 1003,
            "placed_at": "2023-11-30T09:00:00+00:00",
            "placed_on": "2023-11-30",
            "status": "delivered",
            "total": 20,
            "exact_total": 20,
        },
    ]
    assert json.loads(json.dumps(output, allow_nan=False)) == output


async def test_values_without_a_json_number_or_string_still_come_back_json_ready(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    output = await run_ok(
        engine,
        database_spec(
            "SELECT '{\"a\": [1, 2.5, null]}'::jsonb AS doc, '[1, \"x\"]'::json AS list, "
            "'NaN'::numeric AS nan, 'Infinity'::float8 AS inf, '-Infinity'::numeric AS ninf, "
            "interval '1 day 2 seconds' AS span, NULL::text AS nothing, true AS yes, "
            "'\\x0aff'::bytea AS raw, time '12:30:05' AS at, "
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id, ARRAY[date '2024-01-02'] AS days"
        ),
        sources,
    )
    assert output["rows"] == [
        {
            "doc": {"a": [1, 2.5, None]},
            "list": [1, "x"],
            "nan": "NaN",
            "inf": "Infinity",
            "ninf": "-Infinity",
            "span": 86402.0,
            "nothing": None,
            "yes": True,
            "raw": "0aff",
            "at": "12:30:05",
            "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "days": ["2024-01-02"],
        }
    ]
    json.dumps(output, allow_nan=False)  # no NaN/Infinity numbers: strict JSON accepts it


async def test_a_composite_value_comes_back_as_an_object(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    output = await run_ok(
        engine,
        database_spec("SELECT o AS order_row FROM orders AS o WHERE o.order_id = 1004"),
        sources,
    )
    assert output["rows"] == [
        {
            "order_row": {
                "order_id": 1004,
                "customer_id": 7,
                "placed_at": "2024-06-01T12:00:00+00:00",
                "status": "cancelled",
                "total_cents": 9900,
                "currency": "USD",
            }
        }
    ]


async def test_a_statement_without_rows_reports_no_columns(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    output = await run_ok(engine, database_spec("SELECT FROM orders WHERE false"), sources)
    assert output == {"rows": [], "columns": [], "row_count": 0, "truncated": False}


# --- bind parameters ---


async def test_a_string_input_is_bound_to_a_date_placeholder(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    document = database_spec(
        "SELECT order_id FROM orders WHERE placed_at >= $1::date ORDER BY order_id",
        ["{{ inputs.since }}"],
        inputs={"since": {"type": "string"}},
    )
    output = await run_ok(engine, document, sources, {"since": "2024-05-01"})
    assert output["rows"] == [{"order_id": 1002}, {"order_id": 1004}]


async def test_a_date_built_by_a_template_is_bound_as_a_date(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    document = database_spec(
        "SELECT order_id FROM orders WHERE placed_at < $1::date ORDER BY order_id",
        ["{{ inputs.year }}-01-01"],
        inputs={"year": {"type": "integer"}},
    )
    output = await run_ok(engine, document, sources, {"year": 2024})
    assert output["rows"] == [{"order_id": 1003}]


async def test_timestamps_without_an_offset_are_read_in_the_session_time_zone(
    engine: ExecutionEngine, warehouse_dsn: str
) -> None:
    # As PostgreSQL reads a literal: in the session's TimeZone, not the worker process's zone.
    chatham = postgres_sources(f"{warehouse_dsn}&timezone=Pacific/Chatham")
    document = database_spec(
        "SELECT $1::timestamptz = timestamptz '2024-01-01 00:00' AS same_instant, "
        "$2::timestamptz AS with_offset, $3::timestamp AS local",
        ["{{ inputs.naive }}", "{{ inputs.aware }}", "{{ inputs.aware }}"],
        inputs={"naive": {"type": "string"}, "aware": {"type": "string"}},
    )
    try:
        output = await run_ok(
            engine,
            document,
            chatham,
            {"naive": "2024-01-01T00:00:00", "aware": "2024-01-01T10:00:00+02:00"},
        )
    finally:
        await chatham.aclose()
    assert output["rows"] == [
        {
            "same_instant": True,
            "with_offset": "2024-01-01T08:00:00+00:00",
            "local": "2024-01-01T10:00:00",
        }
    ]


async def test_integer_inputs_bind_to_integer_placeholders(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    document = database_spec(
        "SELECT order_id, customer_id = $1 AS same_customer FROM orders "
        "WHERE customer_id = $1 ORDER BY order_id LIMIT $2",
        ["{{ inputs.customer_id }}", "{{ inputs.limit }}"],
        inputs={"customer_id": {"type": "integer"}, "limit": {"type": "integer"}},
    )
    output = await run_ok(engine, document, sources, {"customer_id": 42, "limit": 2})
    assert output["rows"] == [
        {"order_id": 1001, "same_customer": True},
        {"order_id": 1002, "same_customer": True},
    ]


async def test_a_number_bound_to_a_text_placeholder_is_sent_as_its_text(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    document = database_spec(
        "SELECT $1::text AS count_text, $2::text AS ratio_text, $3::text AS flag_text",
        ["{{ inputs.count }}", "{{ inputs.ratio }}", "{{ inputs.flag }}"],
        inputs={
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "flag": {"type": "boolean"},
        },
    )
    output = await run_ok(engine, document, sources, {"count": 42, "ratio": 0.5, "flag": True})
    assert output["rows"] == [{"count_text": "42", "ratio_text": "0.5", "flag_text": "true"}]


@pytest.mark.parametrize(("cancelled", "expected"), [(True, [1004]), (False, [1001, 1002, 1003])])
async def test_a_boolean_input_is_bound_as_a_boolean(
    engine: ExecutionEngine, sources: SourceSet, cancelled: bool, expected: list[int]
) -> None:
    document = database_spec(
        "SELECT order_id FROM orders WHERE (status = 'cancelled') = $1 ORDER BY order_id",
        ["{{ inputs.cancelled }}"],
        inputs={"cancelled": {"type": "boolean"}},
    )
    output = await run_ok(engine, document, sources, {"cancelled": cancelled})
    assert [row["order_id"] for row in output["rows"]] == expected


async def test_list_and_object_inputs_are_bound_to_jsonb_placeholders_as_json(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    # Single-expression templates keep their type: the object arrives as JSON (`true`), not as
    # the text of a Python dict (`{'vip': True}`), which PostgreSQL would refuse.
    document = database_spec(
        "SELECT $1::jsonb AS regions, jsonb_array_length($1::jsonb) AS n, $2::jsonb AS filters",
        ["{{ inputs.regions }}", "{{ inputs.filters }}"],
        inputs={
            "regions": {"type": "array", "items": {"type": "string"}},
            "filters": {"type": "object"},
        },
    )
    filters = {"vip": True, "limit": 5, "tags": ["a"]}
    output = await run_ok(
        engine, document, sources, {"regions": ["emea", "apac"], "filters": filters}
    )
    assert output["rows"] == [{"regions": ["emea", "apac"], "n": 2, "filters": filters}]


async def test_a_value_containing_sql_is_only_ever_data(
    engine: ExecutionEngine, sources: SourceSet, warehouse_dsn: str
) -> None:
    attack = "'; DROP TABLE orders; --"
    document = database_spec(
        "SELECT $1::text AS echoed, count(*) AS matches FROM orders WHERE status = $1",
        ["{{ inputs.status }}"],
        inputs={"status": {"type": "string"}},
    )
    output = await run_ok(engine, document, sources, {"status": attack})
    assert output["rows"] == [{"echoed": attack, "matches": 0}]
    assert await fetch_value(warehouse_dsn, "SELECT count(*) FROM orders") == 4


async def test_a_value_that_is_not_a_date_fails_at_once_as_an_invalid_parameter(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    document = database_spec(
        "SELECT order_id FROM orders WHERE placed_at >= $1::date",
        ["{{ inputs.since }}"],
        inputs={"since": {"type": "string"}},
        retry=NO_RETRY_NEEDED,
    )
    events = await run_spec(
        engine, validated(document, sources), sources, {"since": "next tuesday"}
    )
    assert_failed_with(events, "database.invalid_parameter")
    assert started_attempts(events, "query") == [1]
    assert failures(events) == [(1, "database.invalid_parameter", False)]
    assert "$1" in terminal(events).data["error"]["message"]


async def test_a_value_the_driver_cannot_encode_fails_as_an_invalid_parameter(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    document = database_spec(
        "SELECT $1::int4 AS n",
        ["{{ inputs.n }}"],
        inputs={"n": {"type": "integer"}},
        retry=NO_RETRY_NEEDED,
    )
    events = await run_spec(engine, validated(document, sources), sources, {"n": 2**40})
    assert_failed_with(events, "database.invalid_parameter")
    assert failures(events) == [(1, "database.invalid_parameter", False)]


# --- read-only and writes ---


async def test_read_only_refuses_a_write_the_lexical_check_cannot_see(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    # nextval() writes (it advances the sequence) but reads like any other function call.
    document = database_spec("SELECT nextval('sales_sale_id_seq') AS id", retry=NO_RETRY_NEEDED)
    events = await run_spec(engine, validated(document, sources), sources)
    assert_failed_with(events, "database.read_only")
    assert failures(events) == [(1, "database.read_only", False)]


async def test_read_only_transaction_refuses_a_data_modifying_cte_hidden_in_a_string(
    engine: ExecutionEngine, sources: SourceSet, warehouse_dsn: str
) -> None:
    # With standard_conforming_strings, '\' is a whole string; a lexer that treats the backslash
    # as an escape reads the INSERT as part of a string literal. The spec is built without the
    # validator on purpose: whatever a lexical check misses, the read-only transaction refuses.
    note = f"hidden-{uuid.uuid4()}"
    query = (
        "WITH s AS (SELECT '\\' AS b), "
        f"w AS (INSERT INTO audit_log (note) VALUES ('{note}') RETURNING id) "
        "SELECT count(*) AS n, '\\' AS c FROM w, s"
    )
    spec = WorkflowSpec.model_validate(database_spec(query, retry=NO_RETRY_NEEDED))
    events = await run_spec(engine, spec, sources)
    assert_failed_with(events, "database.read_only")
    assert started_attempts(events, "query") == [1]
    assert (
        await fetch_value(warehouse_dsn, "SELECT count(*) FROM audit_log WHERE note = $1", note)
        == 0
    )


async def test_statements_hidden_in_a_string_are_refused_by_the_server(
    engine: ExecutionEngine, sources: SourceSet, warehouse_dsn: str
) -> None:
    spec = WorkflowSpec.model_validate(database_spec("SELECT '\\'; DROP TABLE orders; --'"))
    events = await run_spec(engine, spec, sources)
    end = terminal(events)
    assert end.type is EventType.EXECUTION_FAILED
    assert end.data["error"]["code"] == "database.sqlstate_42601"  # syntax error or access rule
    assert await fetch_value(warehouse_dsn, "SELECT count(*) FROM orders") == 4


async def test_a_writing_node_inserts_and_returns_the_rows(
    engine: ExecutionEngine, sources: SourceSet, warehouse_dsn: str
) -> None:
    note = f"written-{uuid.uuid4()}"
    document = database_spec(
        "INSERT INTO audit_log (note) VALUES ($1) RETURNING id, note",
        ["{{ inputs.note }}"],
        inputs={"note": {"type": "string"}},
        read_only=False,
    )
    output = await run_ok(engine, document, sources, {"note": note})
    assert output["columns"] == ["id", "note"]
    assert output["row_count"] == 1
    [row] = output["rows"]
    assert row["note"] == note
    assert isinstance(row["id"], int)
    # committed: another connection sees it
    assert (
        await fetch_value(warehouse_dsn, "SELECT note FROM audit_log WHERE id = $1", row["id"])
        == note
    )


async def test_a_writing_node_without_returning_commits_and_reports_no_rows(
    engine: ExecutionEngine, sources: SourceSet, warehouse_dsn: str
) -> None:
    note = f"silent-{uuid.uuid4()}"
    document = database_spec(
        "INSERT INTO audit_log (note) VALUES ($1)",
        ["{{ inputs.note }}"],
        inputs={"note": {"type": "string"}},
        read_only=False,
    )
    output = await run_ok(engine, document, sources, {"note": note})
    assert output == {"rows": [], "columns": [], "row_count": 0, "truncated": False}
    assert (
        await fetch_value(warehouse_dsn, "SELECT count(*) FROM audit_log WHERE note = $1", note)
        == 1
    )


async def test_a_failed_write_is_rolled_back(
    engine: ExecutionEngine, sources: SourceSet, warehouse_dsn: str
) -> None:
    note = f"rolled-back-{uuid.uuid4()}"
    document = database_spec(
        "WITH w AS (INSERT INTO audit_log (note) VALUES ($1) RETURNING id) "
        "SELECT id / 0 AS boom FROM w",
        ["{{ inputs.note }}"],
        inputs={"note": {"type": "string"}},
        read_only=False,
    )
    events = await run_spec(engine, validated(document, sources), sources, {"note": note})
    assert_failed_with(events, "database.sqlstate_22012")  # division_by_zero
    assert (
        await fetch_value(warehouse_dsn, "SELECT count(*) FROM audit_log WHERE note = $1", note)
        == 0
    )


# --- limits ---


async def test_max_rows_truncates_to_exactly_max_rows(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    output = await run_ok(
        engine,
        database_spec("SELECT g AS n FROM generate_series(1, 50) AS g ORDER BY g", max_rows=10),
        sources,
    )
    assert output["rows"] == [{"n": n} for n in range(1, 11)]
    assert output["row_count"] == 10
    assert output["truncated"] is True


async def test_exactly_max_rows_rows_is_not_truncated(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    output = await run_ok(
        engine,
        database_spec("SELECT g AS n FROM generate_series(1, 10) AS g ORDER BY g", max_rows=10),
        sources,
    )
    assert output["row_count"] == 10
    assert output["truncated"] is False


async def test_a_statement_past_its_timeout_fails_and_is_retried(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    document = database_spec("SELECT pg_sleep(5)", statement_timeout=0.2, retry=TWO_ATTEMPTS)
    events = await run_spec(engine, validated(document, sources), sources)
    assert_failed_with(events, "database.statement_timeout")
    assert started_attempts(events, "query") == [1, 2]
    assert failures(events) == [
        (1, "database.statement_timeout", True),
        (2, "database.statement_timeout", False),
    ]


async def test_a_sub_millisecond_statement_timeout_still_applies(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    # 0.0004 s must not round down to PostgreSQL's `0` (no timeout at all).
    document = database_spec("SELECT pg_sleep(5)", statement_timeout=0.0004)
    events = await run_spec(engine, validated(document, sources), sources)
    assert_failed_with(events, "database.statement_timeout")


async def test_a_statement_timeout_does_not_outlive_its_transaction(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    # The timeout is set per transaction: a pooled connection does not keep the last one.
    timed_out = database_spec("SELECT pg_sleep(5)", statement_timeout=0.1)
    events = await run_spec(engine, validated(timed_out, sources), sources)
    assert_failed_with(events, "database.statement_timeout")
    output = await run_ok(
        engine, database_spec("SELECT current_setting('statement_timeout') AS t"), sources
    )
    assert output["rows"] == [{"t": "30s"}]


# --- failures ---


@pytest.mark.parametrize("where", ["closed-port", "missing-socket-dir"])
async def test_an_unreachable_database_is_unavailable_and_retried(
    engine: ExecutionEngine, tmp_path: Path, where: str
) -> None:
    if where == "closed-port":
        dsn = f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"
    else:
        dsn = f"postgresql://postgres@/postgres?host={tmp_path / 'no-such-dir'}"
    unreachable = postgres_sources(dsn, connect_timeout=5)
    try:
        document = database_spec("SELECT 1 AS one", retry=TWO_ATTEMPTS)
        events = await run_spec(engine, validated(document, unreachable), unreachable)
    finally:
        await unreachable.aclose()
    assert_failed_with(events, "database.unavailable")
    assert started_attempts(events, "query") == [1, 2]
    assert failures(events) == [
        (1, "database.unavailable", True),
        (2, "database.unavailable", False),
    ]


async def test_a_server_that_never_answers_is_unavailable_not_a_node_timeout(
    engine: ExecutionEngine,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, say nothing, wait for the client to give up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent_db = postgres_sources(
        f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=0.2
    )
    try:
        document = database_spec("SELECT 1 AS one", retry=TWO_ATTEMPTS)
        events = await run_spec(engine, validated(document, silent_db), silent_db)
    finally:
        await silent_db.aclose()
        server.close()
        await server.wait_closed()
    assert_failed_with(events, "database.unavailable")
    assert failures(events) == [
        (1, "database.unavailable", True),
        (2, "database.unavailable", False),
    ]


async def test_a_connection_lost_mid_statement_is_unavailable_and_the_pool_recovers(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    # The statement terminates its own backend: every attempt loses its connection.
    killer = database_spec(
        "SELECT pg_terminate_backend(pg_backend_pid()) AS killed", retry=TWO_ATTEMPTS
    )
    events = await run_spec(engine, validated(killer, sources), sources)
    assert_failed_with(events, "database.unavailable")
    assert failures(events) == [
        (1, "database.unavailable", True),
        (2, "database.unavailable", False),
    ]
    output = await run_ok(engine, database_spec("SELECT 1 AS one"), sources)
    assert output["rows"] == [{"one": 1}]


async def test_a_sql_error_carries_its_sqlstate_and_is_not_retried(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    document = database_spec("SELECT no_such_column FROM orders", retry=NO_RETRY_NEEDED)
    events = await run_spec(engine, validated(document, sources), sources)
    assert_failed_with(events, "database.sqlstate_42703")  # undefined_column
    assert started_attempts(events, "query") == [1]
    assert failures(events) == [(1, "database.sqlstate_42703", False)]
    assert "no_such_column" in terminal(events).data["error"]["message"]


# --- the pool ---


async def test_the_pool_is_per_source_reused_across_executions_and_closed_with_the_set(
    engine: ExecutionEngine, warehouse_dsn: str
) -> None:
    document = database_spec("SELECT pg_backend_pid() AS pid")
    first_set = postgres_sources(warehouse_dsn)
    other_set = postgres_sources(warehouse_dsn)
    try:
        first = await run_ok(engine, document, first_set)
        second = await run_ok(engine, document, first_set)
        other = await run_ok(engine, document, other_set)
    finally:
        await first_set.aclose()
        await other_set.aclose()
    pid = first["rows"][0]["pid"]
    assert second["rows"][0]["pid"] == pid  # the same pooled connection served both runs
    assert other["rows"][0]["pid"] != pid  # another set's source has a pool of its own

    async def still_connected() -> bool:
        query = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
        return bool(await fetch_value(warehouse_dsn, query, pid))

    for _ in range(200):  # the backend exits shortly after the pool says goodbye
        if not await still_connected():
            break
        await asyncio.sleep(0.05)
    assert not await still_connected()

    try:  # a closed set opens a fresh pool when used again
        reopened = await run_ok(engine, document, first_set)
    finally:
        await first_set.aclose()
    assert isinstance(reopened["rows"][0]["pid"], int)

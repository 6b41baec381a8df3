"""The database node against a real MariaDB: a workflow's database node on a `mysql` source.

Each test runs a small workflow (input → database node → outputs) through the engine with a
`mysql` source on the session's MariaDB (tests/support/mariadb.py, the tables of
tests/support/warehouse_mysql.sql). The conformance suite holds the source to what every
database source does; here the node does it end to end: `?` placeholders bound from templates,
rows JSON-ready, writes only when the node opts in, timeouts retried, the pool reused.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from support.mariadb import connect, fetch_value, mysql_source
from support.network import closed_port
from support.retries import fast_retry
from support.runs import (
    error_of,
    failed_events,
    output_of,
    run_spec,
    single_node_workflow,
    started_attempts,
    validated,
)

from agentflow_grpc.devstack.mariadb import MariaDBEndpoint
from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.observability import spans
from agentflow_grpc.sources.registry import SourceSet
from agentflow_grpc.spec import validate_spec


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
    return single_node_workflow(node, name="mysql-test", inputs=inputs)


@pytest.fixture
async def sources(mariadb: MariaDBEndpoint) -> AsyncIterator[SourceSet]:
    source_set = SourceSet([mysql_source(mariadb)])
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
    output: dict[str, Any] = output_of(
        await run_spec(engine, validated(document, sources), sources, inputs)
    )
    return output


async def test_a_customers_orders_come_back_json_ready_with_inputs_bound_to_placeholders(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    document = database_spec(
        "SELECT order_id, placed_at, DATE(placed_at) AS placed_on, status, "
        "total_cents / 100 AS total FROM orders "
        "WHERE customer_id = ? AND placed_at >= ? ORDER BY order_id LIMIT ?",
        ["{{ inputs.customer_id }}", "{{ inputs.since }}", "{{ inputs.limit }}"],
        inputs={
            "customer_id": {"type": "integer"},
            "since": {"type": "string"},
            "limit": {"type": "integer"},
        },
    )
    output = await run_ok(
        engine, document, sources, {"customer_id": 42, "since": "2024-01-01", "limit": 10}
    )
    assert output == {
        "columns": ["order_id", "placed_at", "placed_on", "status", "total"],
        "rows": [
            {
                "order_id": 1001,
                "placed_at": "2024-02-03T10:00:00",
                "placed_on": "2024-02-03",
                "status": "shipped",
                "total": 129,
            },
            {
                "order_id": 1002,
                "placed_at": "2024-05-17T15:30:00",
                "placed_on": "2024-05-17",
                "status": "delivered",
                "total": 45.99,
            },
        ],
        "row_count": 2,
        "truncated": False,
    }


async def test_an_injection_attempt_is_only_a_value_and_lists_bind_as_json(
    engine: ExecutionEngine, sources: SourceSet, mariadb: MariaDBEndpoint
) -> None:
    attack = "x' OR '1'='1'; DROP TABLE orders; -- "
    document = database_spec(
        "SELECT ? AS echoed, (SELECT count(*) FROM orders WHERE status = ?) AS matches, "
        "JSON_LENGTH(?) AS regions",
        ["{{ inputs.status }}", "{{ inputs.status }}", "{{ inputs.regions }}"],
        inputs={"status": {"type": "string"}, "regions": {"type": "array"}},
    )
    output = await run_ok(engine, document, sources, {"status": attack, "regions": ["emea", "x"]})
    assert output["rows"] == [{"echoed": attack, "matches": 0, "regions": 2}]
    assert await fetch_value(mariadb, "SELECT count(*) FROM orders") == 4


async def test_a_write_is_refused_unless_the_node_opts_in_and_then_commits(
    engine: ExecutionEngine, sources: SourceSet, mariadb: MariaDBEndpoint
) -> None:
    note = f"mysql-node-{uuid.uuid4()}"
    insert = "INSERT INTO audit_log (note) VALUES (?) RETURNING id, note"
    inputs = {"note": {"type": "string"}}
    # Read-only (the default), the validator refuses it before it runs (and the server would:
    # the conformance suite).
    refused = validate_spec(database_spec(insert, ["{{ inputs.note }}"], inputs=inputs))
    assert [v.code for v in refused.violations] == ["sql.write_in_read_only"]
    written = await run_ok(
        engine,
        database_spec(insert, ["{{ inputs.note }}"], inputs=inputs, read_only=False),
        sources,
        {"note": note},
    )
    [row] = written["rows"]
    assert row["note"] == note
    assert isinstance(row["id"], int)
    assert await fetch_value(mariadb, "SELECT note FROM audit_log WHERE id = %s", row["id"]) == note


async def test_a_statement_past_its_timeout_fails_and_is_retried(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    document = database_spec("SELECT SLEEP(5) AS slept", statement_timeout=0.2, retry=fast_retry(2))
    events = await run_spec(engine, validated(document, sources), sources)
    assert error_of(events)["code"] == "database.statement_timeout"
    assert started_attempts(events, "query") == [1, 2]
    assert [(e.data["code"], e.data["will_retry"]) for e in failed_events(events, "query")] == [
        ("database.statement_timeout", True),
        ("database.statement_timeout", False),
    ]


async def test_the_pool_is_reused_across_executions_and_closed_with_the_set(
    engine: ExecutionEngine, mariadb: MariaDBEndpoint
) -> None:
    document = database_spec("SELECT CONNECTION_ID() AS id")
    first_set = SourceSet([mysql_source(mariadb)])
    try:
        first = await run_ok(engine, document, first_set)
        second = await run_ok(engine, document, first_set)
    finally:
        await first_set.aclose()
    connection_id = first["rows"][0]["id"]
    assert second["rows"][0]["id"] == connection_id  # the same pooled connection served both
    query = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = %s"
    for _ in range(100):  # the server ends the session as soon as it reads the goodbye
        if await fetch_value(mariadb, query, connection_id) == 0:
            break
        await asyncio.sleep(0.05)
    assert await fetch_value(mariadb, query, connection_id) == 0


async def test_a_node_timeout_mid_statement_drops_the_connection_and_the_pool_carries_on(
    engine: ExecutionEngine, sources: SourceSet
) -> None:
    slow = database_spec("SELECT SLEEP(5) AS slept")
    slow["nodes"][1]["timeout"] = 0.3  # the node's own deadline, before the statement's
    events = await run_spec(engine, validated(slow, sources), sources)
    assert error_of(events)["code"] == "node.deadline_exceeded"
    output = await run_ok(engine, database_spec("SELECT 1 AS one"), sources)
    assert output["rows"] == [{"one": 1}]


@pytest.mark.parametrize("server", ["closed-port", "never-answers"])
async def test_an_unreachable_server_is_unavailable_and_retried(
    engine: ExecutionEngine, mariadb: MariaDBEndpoint, server: str
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, never greet, wait for the client to give up
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1] if server == "never-answers" else closed_port()
    dsn = f"mysql://{mariadb.user}@127.0.0.1:{port}/{mariadb.database}"
    unreachable = SourceSet([mysql_source(mariadb, dsn=dsn, connect_timeout=0.3)])
    try:
        document = database_spec("SELECT 1 AS one", retry=fast_retry(2))
        events = await run_spec(engine, validated(document, unreachable), unreachable)
    finally:
        await unreachable.aclose()
        listener.close()
        await listener.wait_closed()
    assert error_of(events)["code"] == "database.unavailable"
    assert [(e.data["code"], e.data["will_retry"]) for e in failed_events(events, "query")] == [
        ("database.unavailable", True),
        ("database.unavailable", False),
    ]


async def test_a_connection_lost_mid_statement_is_unavailable_and_the_retry_reconnects(
    engine: ExecutionEngine, sources: SourceSet, mariadb: MariaDBEndpoint
) -> None:
    query = f"SELECT SLEEP(1) AS slept, '{uuid.uuid4()}' AS marker"
    document = database_spec(query, retry=fast_retry(2))

    async def kill_the_first_attempt() -> None:
        killer = await connect(mariadb)
        try:
            async with killer.cursor() as cursor:
                for _ in range(200):
                    await cursor.execute(
                        "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO = %s", (query,)
                    )
                    found = await cursor.fetchone()
                    if found is not None:
                        await cursor.execute("KILL CONNECTION %s", (found[0],))
                        return
                    await asyncio.sleep(0.02)
        finally:
            await killer.ensure_closed()

    killing = asyncio.create_task(kill_the_first_attempt())
    events = await run_spec(engine, validated(document, sources), sources)
    await killing
    assert [(e.data["code"], e.data["will_retry"]) for e in failed_events(events, "query")] == [
        ("database.unavailable", True)
    ]
    assert output_of(events)["rows"][0]["slept"] == 0


async def test_the_statement_is_a_client_span_without_its_values_or_the_password(
    engine: ExecutionEngine, sources: SourceSet, mariadb: MariaDBEndpoint
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    installed = spans.install(provider, content=False)
    secret_value = f"customer-{uuid.uuid4()}"
    try:
        document = database_spec(
            "SELECT order_id FROM orders WHERE status = ? OR status = 'shipped'",
            ["{{ inputs.status }}"],
            inputs={"status": {"type": "string"}},
        )
        output = await run_ok(engine, document, sources, {"status": secret_value})
    finally:
        installed.uninstall()
        provider.shutdown()
    assert output["rows"] == [{"order_id": 1001}]
    [statement] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert statement.name == "SELECT warehouse"
    assert dict(statement.attributes or {}) == {
        "db.system.name": "mariadb",
        "db.operation.name": "SELECT",
        "db.namespace": "warehouse",
        "server.address": "127.0.0.1",
        "server.port": mariadb.port,
        "db.response.returned_rows": 1,
    }
    recorded = str([dict(s.attributes or {}) for s in exporter.get_finished_spans()])
    assert secret_value not in recorded
    assert mariadb.password not in recorded

"""The SQL check by the dialect of the node's source: `$1 … $N` for postgres, `?` for mysql.

With the tenant's sources the node's source type decides; without them (`agentflow validate`), a
query with `?` and no `$n` is read as MySQL's, any other as PostgreSQL's.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentflow_grpc.spec import validate_spec


def database_document(query: str, params: list[str], **config: Any) -> dict[str, Any]:
    return {
        "api_version": "agentflow/v1",
        "name": "placeholders",
        "inputs": {"a": {"type": "string"}},
        "outputs": {"rows": {"from": "nodes.query.output.rows"}},
        "nodes": [
            {"id": "start", "type": "input"},
            {
                "id": "query",
                "type": "database",
                "source": "db",
                "config": {"query": query, "params": params, **config},
            },
        ],
        "edges": [{"from": "start", "to": "query"}],
    }


def violations(
    query: str, params: list[str], source_type: str | None, **config: Any
) -> list[tuple[str, str]]:
    sources = None if source_type is None else {"db": source_type}
    result = validate_spec(database_document(query, params, **config), sources=sources)
    return [(v.path.rsplit("/", 1)[-1], v.code.value) for v in result.violations]


TWO = ["{{ inputs.a }}", "{{ inputs.a }}"]


@pytest.mark.parametrize("source_type", ["mysql", None])
def test_question_marks_one_per_param_in_order_pass_for_mysql(source_type: str | None) -> None:
    query = "SELECT * FROM t WHERE a = ? AND b LIKE ? AND c = '?' AND `d?` = 1 -- ?\n"
    assert violations(query, TWO, source_type) == []


@pytest.mark.parametrize("source_type", ["postgres", None])
def test_numbered_placeholders_pass_for_postgres(source_type: str | None) -> None:
    assert violations("SELECT $2, $1, $1", TWO, source_type) == []


UNSUPPORTED = ("query", "sql.unsupported_placeholder")
MISMATCH = ("params", "sql.parameter_mismatch")


@pytest.mark.parametrize(
    ("query", "source_type", "expected"),
    [
        # a mysql source: `?` only, one for each param
        ("SELECT $1, $2", "mysql", {UNSUPPORTED, MISMATCH}),
        ("SELECT ?", "mysql", {MISMATCH}),
        ("SELECT ?, ?, ?", "mysql", {MISMATCH}),
        ("SELECT ?, %s", "mysql", {UNSUPPORTED, MISMATCH}),
        ("SELECT ?, :b", "mysql", {UNSUPPORTED, MISMATCH}),
        # a postgres source: `?` is not a placeholder there
        ("SELECT ?, ?", "postgres", {UNSUPPORTED, MISMATCH}),
        # no sources: a mix of the two is PostgreSQL's, and `?` unsupported there
        ("SELECT ?, $2", None, {UNSUPPORTED, MISMATCH}),
    ],
)
def test_the_other_dialects_placeholders_are_refused(
    query: str, source_type: str | None, expected: set[tuple[str, str]]
) -> None:
    assert set(violations(query, TWO, source_type)) == expected


def test_mysql_reads_hash_comments_and_backslash_escapes() -> None:
    # `#` comments to the end of the line, and \' inside a string, hide neither `?` nor `;`.
    query = "SELECT 'it\\'s ? here' AS a, ? AS b #? ; DROP TABLE t\n, ? AS c"
    assert violations(query, TWO, "mysql") == []
    assert violations("SELECT ?; DELETE FROM t WHERE a = ?", TWO, "mysql", read_only=False) == [
        ("query", "sql.multiple_statements")
    ]


def test_a_write_in_a_read_only_mysql_node_is_refused() -> None:
    assert violations("REPLACE INTO t VALUES (?, ?)", TWO, "mysql") == [
        ("query", "sql.write_in_read_only")
    ]
    assert violations("REPLACE INTO t VALUES (?, ?)", TWO, "mysql", read_only=False) == []


def test_a_templated_query_names_the_dialects_placeholders() -> None:
    result = validate_spec(database_document("SELECT {{ inputs.a }}", []), sources={"db": "mysql"})
    [violation] = result.violations
    assert violation.code.value == "sql.templated"
    assert "write ? placeholders" in violation.message

"""Validator behaviour beyond one-code-per-example: ordering, robustness, SQL, parse_spec."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from agentflow_grpc.model.errors import InvalidSpecError, SpecReadError
from agentflow_grpc.spec import (
    Limits,
    ViolationCode,
    WorkflowSpec,
    load_document,
    parse_spec,
    validate_spec,
)
from agentflow_grpc.spec.codes import pointer_sort_key

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def triage() -> dict[str, Any]:
    return json.loads((EXAMPLES / "support-triage.json").read_text())


@pytest.fixture
def sql_qa() -> dict[str, Any]:
    return json.loads((EXAMPLES / "sql-question-answering.json").read_text())


def _codes(document: Any, **kwargs: Any) -> list[tuple[str, str]]:
    return [(v.path, v.code.value) for v in validate_spec(document, **kwargs).violations]


def _with_one_param_query(document: dict[str, Any], query: str) -> dict[str, Any]:
    """Give the document's database node `query` and one parameter; return the node."""
    node = next(node for node in document["nodes"] if node["type"] == "database")
    node["config"]["query"] = query
    node["config"]["params"] = node["config"]["params"][:1]
    return node


def test_violations_are_sorted_by_path_and_unique(triage: dict[str, Any]) -> None:
    triage["nodes"][5]["config"]["prompt"] = "{{ inputs.a }} {{ inputs.a }} {{ nodes.zz.output }}"
    triage["nodes"][1]["config"]["prompt"] = "{{ inputs.b }}"
    triage["edges"].append({"from": "ticket", "to": "nowhere"})
    violations = validate_spec(triage).violations
    paths = [v.path for v in violations]
    assert paths == sorted(paths, key=pointer_sort_key)
    assert len(set(violations)) == len(violations)
    assert ("/nodes/5/config/prompt", "template.unknown_input") in _codes(triage)


def test_pointer_order_is_numeric() -> None:
    assert sorted(["/nodes/10", "/nodes/2", "/edges/1"], key=pointer_sort_key) == [
        "/edges/1",
        "/nodes/2",
        "/nodes/10",
    ]


def test_missing_nodes_is_one_violation_not_a_cascade() -> None:
    document = {"api_version": "agentflow/v1", "name": "x", "outputs": {"a": {"from": "1"}}}
    assert _codes(document) == [("/nodes", "schema.required")]


def test_node_of_unknown_type_does_not_cause_route_noise(triage: dict[str, Any]) -> None:
    triage["nodes"][2]["type"] = "webhook"
    assert _codes(triage) == [("/nodes/2/type", "node.unknown_type")]


@pytest.mark.parametrize(
    "query",
    [
        "insert into audit (q) values ($1)",
        "WITH gone AS (DELETE FROM t WHERE id = $1 RETURNING *) SELECT * FROM gone",
        "EXPLAIN ANALYZE DELETE FROM t WHERE id = $1",
        "SELECT * INTO copy_of_t FROM t WHERE id = $1",
        "SELECT * FROM t WHERE id = $1 FOR UPDATE",
        "create table t2 as select * from t where id = $1",
        "TRUNCATE t -- $1",
        # PostgreSQL reads '\' as a complete string (backslashes escape only in E'…').
        "WITH s AS (SELECT '\\' AS b), w AS (INSERT INTO audit (note) VALUES ($1) RETURNING id) "
        "SELECT count(*) AS n, '\\' AS c FROM w, s",
    ],
)
def test_writes_are_refused_in_read_only_nodes(sql_qa: dict[str, Any], query: str) -> None:
    node = _with_one_param_query(sql_qa, query)
    index = sql_qa["nodes"].index(node)
    codes = _codes(sql_qa)
    if query.startswith("TRUNCATE"):  # the placeholder is only in a comment
        assert (f"/nodes/{index}/config/params", "sql.parameter_mismatch") in codes
    assert (f"/nodes/{index}/config/query", "sql.write_in_read_only") in codes
    node["config"]["read_only"] = False
    assert (f"/nodes/{index}/config/query", "sql.write_in_read_only") not in _codes(sql_qa)


@pytest.mark.parametrize(
    "query",
    [
        "select replace(name, 'a', 'b') from t where id = $1",
        "select 'insert into x' as text, \"delete\" from t where id = $1",
        "select * from t where note = '$2' and id = $1 -- and $3",
        "select E'it\\'s; delete' as a, $$ insert; $$ as b, '\\' as c from t where id = $1",
    ],
)
def test_reads_that_look_like_writes_pass(sql_qa: dict[str, Any], query: str) -> None:
    _with_one_param_query(sql_qa, query)
    assert _codes(sql_qa) == []


def test_deep_nesting_is_a_violation_not_a_crash(triage: dict[str, Any]) -> None:
    triage["nodes"][1]["config"]["prompt"] = "{{ " + "(" * 300 + "inputs.body" + ")" * 300 + " }}"
    triage["outputs"]["category"]["from"] = "[" * 300 + "nodes.classify.output" + "]" * 300
    schema: dict[str, Any] = {}
    for _ in range(200):
        schema = {"not": schema}
    triage["nodes"][1]["config"]["output_schema"] = schema
    assert _codes(triage) == [
        ("/nodes/1/config/output_schema", "llm.invalid_output_schema"),
        ("/nodes/1/config/prompt", "template.syntax_error"),
        ("/outputs/category/from", "template.syntax_error"),
    ]


def test_deeply_nested_json_file_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    spec = tmp_path / "deep.json"
    spec.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SpecReadError, match="nested too deeply"):
        load_document(spec)


def test_limits_count_unreadable_nodes_too(triage: dict[str, Any]) -> None:
    triage["nodes"].extend([{"bad": True}] * 3)
    codes = _codes(triage, limits=Limits(max_nodes=8))
    assert ("/nodes", "limit.too_many_nodes") in codes


def test_parse_spec_returns_the_model_or_raises_with_all_violations(
    triage: dict[str, Any],
) -> None:
    assert isinstance(parse_spec(copy.deepcopy(triage)), WorkflowSpec)
    triage["nodes"][1]["config"]["prompt"] = "{{ inputs.nope }}"
    del triage["edges"][0]
    with pytest.raises(InvalidSpecError) as raised:
        parse_spec(triage)
    codes = {v.code for v in raised.value.violations}
    assert ViolationCode.TEMPLATE_UNKNOWN_INPUT in codes
    assert ViolationCode.GRAPH_UNREACHABLE in codes
    assert raised.value.code == "invalid_spec"
    count = len(raised.value.violations)
    assert raised.value.message.startswith(f"the spec has {count} violations: /nodes/0 ")


def test_sources_are_checked_only_when_given(triage: dict[str, Any]) -> None:
    assert _codes(triage) == []
    assert _codes(triage, sources={"openai-main": "openai"}) == []
    assert set(_codes(triage, sources={"openai-main": "postgres"})) == {
        (f"/nodes/{i}/source", "source.incompatible") for i in (1, 3, 4, 5)
    }


def test_valid_spec_has_no_partial_view_leaks(triage: dict[str, Any]) -> None:
    result = validate_spec(triage)
    assert result.ok
    assert result.spec is not None
    assert result.spec.to_document() == triage


def test_non_ascii_digit_keys_sort_without_crashing() -> None:
    codes = _codes({"²": None, "api_version": "agentflow/v1"})
    assert ("/²", "schema.unknown_field") in codes


def test_a_node_that_is_not_an_object_is_named_by_position(triage: dict[str, Any]) -> None:
    triage["nodes"].append(5)
    [violation] = validate_spec(triage).violations
    assert violation.path == "/nodes/6"
    assert violation.message.startswith("nodes[6]: ")


@pytest.mark.parametrize(
    ("template", "unknown"),
    [
        ("{% for x in inputs.xs %}{% endfor %}{{ x | bogus }}", "x"),
        ("{{ loop | bogus }}", "loop"),
        ("{% for x in inputs.xs %}{{ x is bogus }}{% endfor %}{{ y }}", "y"),
    ],
)
def test_unknown_filters_do_not_hide_unknown_variables(
    triage: dict[str, Any], template: str, unknown: str
) -> None:
    triage["nodes"][1]["config"]["prompt"] = template
    messages = {(v.code.value, v.message.split(";")[0]) for v in validate_spec(triage).violations}
    assert ("template.unknown_variable", f"unknown variable '{unknown}'") in messages
    assert any(code == "template.unknown_filter" for code, _ in messages)


def test_outputs_reading_no_known_node_do_not_flag_every_node(triage: dict[str, Any]) -> None:
    triage["outputs"] = {"reply": {"from": "nodes.missing.output"}}
    assert _codes(triage) == [("/outputs/reply/from", "template.unknown_node")]

"""The validator's join checks: aggregators a loop puts out of step (`aggregator.loop_mismatch`,
refused) and plain nodes fed by parallel branches (`graph.parallel_join`, a warning only).

tests/engine/test_joins.py runs the accepted shapes; the refused ones stall or join early at run
time (a branch's run count lags or leads the aggregator's).
"""

from __future__ import annotations

from typing import Any

import pytest
from support.plugins import ControlledNodes, plugin_node, workflow

from agentflow_grpc.spec import ValidationResult, validate_spec

CATALOG = ControlledNodes().registry.catalog
LOOP_MISMATCH = "aggregator.loop_mismatch"
PARALLEL_JOIN = "graph.parallel_join"


def validate(document: dict[str, Any]) -> ValidationResult:
    return validate_spec(document, plugins=CATALOG)


def found(result: ValidationResult, code: str = LOOP_MISMATCH) -> list[str]:
    return [v.path for v in (*result.violations, *result.warnings) if v.code.value == code]


def step(node_id: str) -> dict[str, Any]:
    return plugin_node(node_id, "test.echo")


def join(node_id: str = "join") -> dict[str, Any]:
    return {"id": node_id, "type": "aggregator", "config": {"strategy": "object"}}


def router(node_id: str, routes: tuple[str, ...], default: str, bound: int | None = None) -> Any:
    config: dict[str, Any] = {"routes": [{"name": r, "when": "true"} for r in routes]}
    config["default"] = default
    if bound is not None:
        config["max_iterations"] = bound
    return {"id": node_id, "type": "router", "config": config}


def loop(node_id: str = "review") -> dict[str, Any]:
    return router(node_id, ("again",), "done", bound=5)


# --- refused: aggregators a loop puts out of step ---


def test_an_aggregator_in_a_loop_with_a_branch_from_outside_it_is_refused_at_that_edge() -> None:
    result = validate(
        workflow(
            [step("draft"), join(), loop(), step("publish")],
            [
                ("start", "draft"),
                ("start", "join"),
                ("draft", "join"),
                ("join", "review"),
                ("review", "draft", "again"),
                ("review", "publish", "done"),
            ],
            {"out": "nodes.publish.output"},
        )
    )
    assert not result.ok
    assert found(result) == ["/edges/1"]
    (violation,) = [v for v in result.violations if v.code.value == LOOP_MISMATCH]
    assert "'start' runs once" in violation.message
    assert "wait for it forever" in violation.message


def test_an_aggregator_in_a_loop_fed_by_exclusive_routes_of_a_router_in_it_is_refused() -> None:
    result = validate(
        workflow(
            [
                step("draft"),
                router("pick", ("a",), "b"),
                step("A"),
                step("B"),
                join(),
                loop(),
                step("publish"),
            ],
            [
                ("start", "draft"),
                ("draft", "pick"),
                ("pick", "A", "a"),
                ("pick", "B", "b"),
                ("A", "join"),
                ("B", "join"),
                ("join", "review"),
                ("review", "draft", "again"),
                ("review", "publish", "done"),
            ],
            {"out": "nodes.publish.output"},
        )
    )
    assert found(result) == ["/edges/4", "/edges/5"]
    messages = [v.message for v in result.violations]
    assert any("router 'pick' takes route 'b'" in m and "'A' does not run" in m for m in messages)


def test_an_aggregator_in_a_loop_with_a_branch_a_router_may_leave_out_is_refused() -> None:
    # `maybe` skips `extra` on its default route, and the iteration goes on through `draft`.
    result = validate(
        workflow(
            [
                step("draft"),
                router("maybe", ("more",), "skip"),
                step("extra"),
                join(),
                loop(),
                step("publish"),
                step("skipped"),
            ],
            [
                ("start", "draft"),
                ("draft", "maybe"),
                ("draft", "join"),
                ("maybe", "extra", "more"),
                ("maybe", "skipped", "skip"),
                ("extra", "join"),
                ("join", "review"),
                ("review", "draft", "again"),
                ("review", "publish", "done"),
            ],
            {"out": "nodes.publish.output", "skipped": "nodes.skipped.output"},
        )
    )
    assert found(result) == ["/edges/5"]


def test_nested_loops_an_aggregator_in_the_inner_loop_with_a_branch_of_the_outer_is_refused() -> (
    None
):
    result = validate(
        workflow(
            [
                step("outer_step"),
                step("inner_step"),
                join(),
                loop("inner"),
                loop("outer"),
                step("publish"),
            ],
            [
                ("start", "outer_step"),
                ("outer_step", "inner_step"),
                ("outer_step", "join"),
                ("inner_step", "join"),
                ("join", "inner"),
                ("inner", "inner_step", "again"),
                ("inner", "outer", "done"),
                ("outer", "outer_step", "again"),
                ("outer", "publish", "done"),
            ],
            {"out": "nodes.publish.output"},
        )
    )
    assert found(result) == ["/edges/2"]


def test_nested_loops_an_aggregator_with_a_branch_in_an_inner_loop_it_is_not_in_is_refused() -> (
    None
):
    result = validate(
        workflow(
            [
                step("outer_step"),
                step("inner_step"),
                loop("inner"),
                join(),
                loop("outer"),
                step("publish"),
            ],
            [
                ("start", "outer_step"),
                ("outer_step", "inner_step"),
                ("outer_step", "join"),
                ("inner_step", "inner"),
                ("inner_step", "join"),
                ("inner", "inner_step", "again"),
                ("inner", "publish", "done"),
                ("join", "outer"),
                ("outer", "outer_step", "again"),
                ("outer", "publish", "done"),
            ],
            {"out": "nodes.publish.output"},
        )
    )
    assert "/edges/4" in found(result)
    assert any("several times" in v.message for v in result.violations)


def test_an_aggregator_after_a_loop_fed_from_inside_it_is_refused() -> None:
    result = validate(
        workflow(
            [step("draft"), loop(), step("publish"), join()],
            [
                ("start", "draft"),
                ("draft", "review"),
                ("draft", "join"),
                ("review", "draft", "again"),
                ("review", "publish", "done"),
                ("publish", "join"),
            ],
            {"out": "nodes.join.output"},
        )
    )
    assert found(result) == ["/edges/2"]


def test_an_aggregator_joining_a_branch_after_a_loop_with_one_that_is_not_is_refused() -> None:
    result = validate(
        workflow(
            [step("draft"), step("side"), loop(), step("publish"), join()],
            [
                ("start", "draft"),
                ("start", "side"),
                ("draft", "review"),
                ("review", "draft", "again"),
                ("review", "publish", "done"),
                ("publish", "join"),
                ("side", "join"),
            ],
            {"out": "nodes.join.output"},
        )
    )
    assert found(result) == ["/nodes/5"]
    (violation,) = result.violations
    assert "'publish', which comes after a loop (router 'review')" in violation.message


# --- accepted ---


LOOP_JOIN = workflow(
    [step("draft"), step("left"), step("right"), join(), loop(), step("publish")],
    [
        ("start", "draft"),
        ("draft", "left"),
        ("draft", "right"),
        ("left", "join"),
        ("right", "join"),
        ("join", "review"),
        ("review", "draft", "again"),
        ("review", "publish", "done"),
    ],
    {"out": "nodes.publish.output"},
)

EXCLUSIVE_ROUTES = workflow(
    [
        router("first", ("x",), "y"),
        router("second", ("p",), "q"),
        step("A"),
        step("B"),
        step("C"),
        join(),
    ],
    [
        ("start", "first"),
        ("first", "second", "x"),
        ("first", "C", "y"),
        ("second", "A", "p"),
        ("second", "B", "q"),
        ("A", "join"),
        ("B", "join"),
        ("C", "join"),
    ],
    {"out": "nodes.join.output"},
)

AFTER_LOOP = workflow(
    [step("draft"), loop(), step("publish"), step("X"), step("Y"), join()],
    [
        ("start", "draft"),
        ("draft", "review"),
        ("review", "draft", "again"),
        ("review", "publish", "done"),
        ("publish", "X"),
        ("publish", "Y"),
        ("X", "join"),
        ("Y", "join"),
    ],
    {"out": "nodes.join.output"},
)

MERGED_IN_LOOP = workflow(
    [
        step("draft"),
        router("pick", ("a",), "b"),
        step("A"),
        step("B"),
        step("merge"),
        step("left"),
        step("right"),
        join(),
        loop(),
        step("publish"),
    ],
    [
        ("start", "draft"),
        ("draft", "pick"),
        ("pick", "A", "a"),
        ("pick", "B", "b"),
        ("A", "merge"),
        ("B", "merge"),
        ("merge", "left"),
        ("merge", "right"),
        ("left", "join"),
        ("right", "join"),
        ("join", "review"),
        ("review", "draft", "again"),
        ("review", "publish", "done"),
    ],
    {"out": "nodes.publish.output"},
)


@pytest.mark.parametrize(
    "document",
    [LOOP_JOIN, EXCLUSIVE_ROUTES, AFTER_LOOP, MERGED_IN_LOOP],
    ids=["loop-fan-out", "exclusive-routes", "after-loop", "merged-in-loop"],
)
def test_joins_whose_branches_keep_in_step_are_valid_without_warnings(
    document: dict[str, Any],
) -> None:
    result = validate(document)
    assert result.ok, result.violations
    assert result.warnings == ()


# --- warnings: plain nodes fed by parallel branches ---


def test_a_plain_node_fed_by_parallel_branches_is_a_warning_not_a_violation() -> None:
    result = validate(
        workflow(
            [step("a"), step("b"), step("after")],
            [("start", "a"), ("start", "b"), ("a", "after"), ("b", "after")],
            {"out": "nodes.after.output"},
        )
    )
    assert result.ok
    assert result.spec is not None
    assert result.violations == ()
    (warning,) = result.warnings
    assert (warning.path, warning.code.value) == ("/nodes/3", PARALLEL_JOIN)
    assert "'a' and 'b'" in warning.message
    assert "aggregator" in warning.message
    assert warning.to_dict()["code"] == PARALLEL_JOIN


def test_a_router_fed_by_a_fan_out_and_its_own_branch_is_warned_about() -> None:
    result = validate(
        workflow(
            [step("a"), router("pick", ("x",), "y"), step("X"), step("Y")],
            [
                ("start", "a"),
                ("start", "pick"),
                ("a", "pick"),
                ("pick", "X", "x"),
                ("pick", "Y", "y"),
            ],
            {"x": "nodes.X.output", "y": "nodes.Y.output"},
        )
    )
    assert found(result, PARALLEL_JOIN) == ["/nodes/2"]


def test_exclusive_routes_and_loop_re_entries_into_a_plain_node_are_not_warned_about() -> None:
    exclusive = validate(
        workflow(
            [router("pick", ("a",), "b"), step("A"), step("B"), step("after")],
            [
                ("start", "pick"),
                ("pick", "A", "a"),
                ("pick", "B", "b"),
                ("A", "after"),
                ("B", "after"),
            ],
            {"out": "nodes.after.output"},
        )
    )
    straight = validate(
        workflow(
            [router("pick", ("a",), "b"), step("after")],
            [("start", "pick"), ("pick", "after", "a"), ("pick", "after", "b")],
            {"out": "nodes.after.output"},
        )
    )
    assert exclusive.ok
    assert straight.ok
    assert exclusive.warnings == straight.warnings == validate(LOOP_JOIN).warnings == ()


def test_warnings_are_reported_beside_violations() -> None:
    document = workflow(
        [step("a"), step("b"), step("after")],
        [("start", "a"), ("start", "b"), ("a", "after"), ("b", "after"), ("after", "nowhere")],
        {"out": "nodes.after.output"},
    )
    result = validate(document)
    assert not result.ok
    assert found(result, "edge.unknown_node") == ["/edges/4/to"]
    assert found(result, PARALLEL_JOIN) == ["/nodes/3"]


def test_an_aggregator_in_a_loop_fed_by_itself_is_refused_not_a_crash() -> None:
    # Found by the mutation property test: the self-edge made the loop check raise KeyError.
    result = validate(
        workflow(
            [step("draft"), join(), loop(), step("publish")],
            [
                ("start", "draft"),
                ("draft", "join"),
                ("join", "join"),
                ("join", "review"),
                ("review", "draft", "again"),
                ("review", "publish", "done"),
            ],
            {"out": "nodes.publish.output"},
        )
    )
    assert "/edges/2" in found(result)

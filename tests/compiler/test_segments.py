"""How a spec is cut into segments (linear runs compiled into one LangGraph node), and the graph."""

from __future__ import annotations

from typing import Any

import pytest

from agentflow_grpc.compiler import CompileError, compile_workflow, split_segments
from agentflow_grpc.spec import PluginType, WorkflowSpec, validate_spec
from agentflow_grpc.spec.plugins import PluginCatalog

PLUGINS = PluginCatalog([PluginType("test.step")])


def step(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "plugin", "plugin": "test.step"}


def spec(nodes: list[dict[str, Any]], edges: list[tuple[str, ...]], reads: str) -> WorkflowSpec:
    document = {
        "api_version": "agentflow/v1",
        "name": "shape",
        "outputs": {"out": {"from": f"nodes.{reads}.output"}},
        "nodes": [{"id": "start", "type": "input"}, *nodes],
        "edges": [
            {"from": e[0], "to": e[1], **({"route": e[2]} if len(e) == 3 else {})} for e in edges
        ],
    }
    result = validate_spec(document, plugins=PLUGINS)
    assert result.spec is not None, result.violations
    return result.spec


def segments_of(workflow: WorkflowSpec) -> list[tuple[str, ...]]:
    return [segment.node_ids for segment in split_segments(workflow).segments]


def test_a_chain_is_one_segment() -> None:
    chain = spec([step("a"), step("b"), step("c")], [("start", "a"), ("a", "b"), ("b", "c")], "c")
    assert segments_of(chain) == [("start", "a", "b", "c")]


def test_fan_out_starts_a_segment_per_branch_and_the_aggregator_its_own() -> None:
    shape = spec(
        [step("a1"), step("a2"), step("b"), {"id": "join", "type": "aggregator"}, step("after")],
        [
            ("start", "a1"),
            ("a1", "a2"),
            ("start", "b"),
            ("a2", "join"),
            ("b", "join"),
            ("join", "after"),
        ],
        "after",
    )
    assert segments_of(shape) == [("start",), ("a1", "a2"), ("b",), ("join", "after")]


def test_a_router_ends_its_segment_and_each_route_starts_one() -> None:
    router = {
        "id": "r",
        "type": "router",
        "config": {"routes": [{"name": "x", "when": "true"}], "default": "y"},
    }
    shape = spec(
        [
            step("pre"),
            router,
            step("x1"),
            step("x2"),
            step("y1"),
            {"id": "j", "type": "aggregator"},
        ],
        [
            ("start", "pre"),
            ("pre", "r"),
            ("r", "x1", "x"),
            ("x1", "x2"),
            ("r", "y1", "y"),
            ("x2", "j"),
            ("y1", "j"),
        ],
        "j",
    )
    assert segments_of(shape) == [("start", "pre", "r"), ("x1", "x2"), ("y1",), ("j",)]


def test_a_loop_entry_starts_a_segment() -> None:
    router = {
        "id": "check",
        "type": "router",
        "config": {
            "routes": [{"name": "again", "when": "true"}],
            "default": "done",
            "max_iterations": 3,
        },
    }
    shape = spec(
        [step("work"), router, step("finish")],
        [
            ("start", "work"),
            ("work", "check"),
            ("check", "work", "again"),
            ("check", "finish", "done"),
        ],
        "finish",
    )
    assert segments_of(shape) == [("start",), ("work", "check"), ("finish",)]
    compiled = compile_workflow(shape)
    assert compiled.recursion_limit >= 3 * 3
    assert set(compiled.graph.get_graph().nodes) == {
        "__start__",
        "__end__",
        "start",
        "work",
        "finish",
    }


def test_a_cycle_without_a_router_cannot_be_compiled() -> None:
    looping = WorkflowSpec.model_validate(
        {
            "api_version": "agentflow/v1",
            "name": "bad",
            "outputs": {"out": {"from": "nodes.a.output"}},
            "nodes": [{"id": "start", "type": "input"}, step("a"), step("b")],
            "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}],
        }
    )
    with pytest.raises(CompileError, match="a, b form a cycle with no router"):
        split_segments(looping)


def test_the_spec_hash_ignores_key_order_but_not_content() -> None:
    chain = spec([step("a")], [("start", "a")], "a")
    document = chain.to_document()
    reordered = WorkflowSpec.model_validate(dict(reversed(list(document.items()))))
    assert reordered.content_hash == chain.content_hash
    changed = WorkflowSpec.model_validate(document | {"title": "Changed"})
    assert changed.content_hash != chain.content_hash

"""What joins do at run time: aggregators behind routers (exclusive routes, nested routers, no
branch at all), aggregators and loops (the shapes the validator accepts), and a plain node fed by
parallel branches (legal, with a warning: it runs once per arriving branch).

The nodes are test plugins (tests/support/plugins.py) run by the real compiler and LangGraph.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.plugins import ControlledNodes, plugin_node, workflow
from support.runs import assert_well_formed, collect, for_node, terminal

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.registry import SourceSet
from agentflow_grpc.spec import validate_spec

AGGREGATE = {"type": "aggregator", "config": {"strategy": "object"}}


async def run(
    nodes: ControlledNodes, document: dict[str, Any], inputs: dict[str, Any] | None = None
) -> list[ExecutionEvent]:
    result = validate_spec(document, plugins=nodes.registry.catalog)
    assert result.ok, result.violations
    assert result.spec is not None
    engine = ExecutionEngine(
        metrics=Metrics(), registry=nodes.registry, node_timeout=10, execution_timeout=20
    )
    events = await asyncio.wait_for(
        collect(engine.execute(result.spec, inputs or {}, sources=SourceSet([]))), timeout=20
    )
    assert_well_formed(events)
    assert terminal(events).type is EventType.EXECUTION_COMPLETED, terminal(events).data
    return events


def completions(events: list[ExecutionEvent], node_id: str) -> list[Any]:
    return [
        e.data["output"] for e in for_node(events, node_id) if e.type is EventType.NODE_COMPLETED
    ]


def router(node_id: str, when: str, route: str = "yes", default: str = "no", **config: Any) -> Any:
    routes = [{"name": route, "when": when}]
    return {
        "id": node_id,
        "type": "router",
        "config": {"routes": routes, "default": default, **config},
    }


# --- aggregators behind routers ---


@pytest.mark.parametrize(("take", "joined"), [(True, "A"), (False, "B")])
async def test_an_aggregator_fed_only_by_exclusive_routes_joins_the_one_taken(
    nodes: ControlledNodes, take: bool, joined: str
) -> None:
    document = workflow(
        [
            router("pick", "inputs.take"),
            plugin_node("A", "test.text", value="a"),
            plugin_node("B", "test.text", value="b"),
            {"id": "join", **AGGREGATE},
        ],
        [
            ("start", "pick"),
            ("pick", "A", "yes"),
            ("pick", "B", "no"),
            ("A", "join"),
            ("B", "join"),
        ],
        {"joined": "nodes.join.output"},
        inputs={"take": {"type": "boolean"}},
    )
    events = await run(nodes, document, {"take": take})

    assert completions(events, "join") == [{joined: {"text": joined.lower()}}]


@pytest.mark.parametrize(
    ("outer", "inner", "joined"), [(True, True, "A"), (True, False, "B"), (False, True, "C")]
)
async def test_behind_nested_routers_the_aggregator_joins_the_branch_taken(
    nodes: ControlledNodes, outer: bool, inner: bool, joined: str
) -> None:
    document = workflow(
        [
            router("first", "inputs.outer"),
            router("second", "inputs.inner"),
            plugin_node("A", "test.text", value="A"),
            plugin_node("B", "test.text", value="B"),
            plugin_node("C", "test.text", value="C"),
            {"id": "join", **AGGREGATE},
        ],
        [
            ("start", "first"),
            ("first", "second", "yes"),
            ("first", "C", "no"),
            ("second", "A", "yes"),
            ("second", "B", "no"),
            ("A", "join"),
            ("B", "join"),
            ("C", "join"),
        ],
        {"joined": "nodes.join.output"},
        inputs={"outer": {"type": "boolean"}, "inner": {"type": "boolean"}},
    )
    events = await run(nodes, document, {"outer": outer, "inner": inner})

    assert completions(events, "join") == [{joined: {"text": joined}}]


async def test_an_aggregator_none_of_whose_branches_runs_does_not_run(
    nodes: ControlledNodes,
) -> None:
    document = workflow(
        [
            router("pick", "false"),
            plugin_node("A", "test.text", value="a"),
            plugin_node("B", "test.text", value="b"),
            plugin_node("other", "test.text", value="other"),
            {"id": "join", **AGGREGATE},
        ],
        [
            ("start", "pick"),
            ("pick", "A", "yes"),
            ("pick", "B", "yes"),
            ("pick", "other", "no"),
            ("A", "join"),
            ("B", "join"),
        ],
        {
            "joined": "nodes.join.output if nodes.join is defined else none",
            "other": "nodes.other.output.text if nodes.other is defined else none",
        },
    )
    events = await run(nodes, document)

    assert not for_node(events, "join")
    assert terminal(events).data["outputs"] == {"joined": None, "other": "other"}


# --- aggregators and loops ---


def loop_router(when: str) -> dict[str, Any]:
    return router("review", when, route="again", default="done", max_iterations=5)


async def test_in_a_loop_exclusive_routes_merged_by_a_plain_node_feed_every_join(
    nodes: ControlledNodes,
) -> None:
    # The router inside the loop alternates; the plain node `merge` runs once either way, and
    # the aggregator joins its two branches once per iteration.
    document = workflow(
        [
            plugin_node("draft", "test.echo"),
            router("parity", "nodes.draft.output.visit % 2 == 1", route="odd", default="even"),
            plugin_node("odd", "test.text", value="odd"),
            plugin_node("even", "test.text", value="even"),
            plugin_node("merge", "test.echo", value="{{ nodes.draft.output.visit }}"),
            plugin_node("left", "test.text", value="L{{ nodes.merge.output.value }}"),
            plugin_node("right", "test.text", value="R{{ nodes.merge.output.value }}"),
            {"id": "join", **AGGREGATE},
            loop_router("nodes.draft.output.visit < 3"),
            plugin_node("publish", "test.echo", value="{{ nodes.join.output.left.text }}"),
        ],
        [
            ("start", "draft"),
            ("draft", "parity"),
            ("parity", "odd", "odd"),
            ("parity", "even", "even"),
            ("odd", "merge"),
            ("even", "merge"),
            ("merge", "left"),
            ("merge", "right"),
            ("left", "join"),
            ("right", "join"),
            ("join", "review"),
            ("review", "draft", "again"),
            ("review", "publish", "done"),
        ],
        {"last": "nodes.publish.output.value"},
    )
    events = await run(nodes, document)

    assert terminal(events).data["outputs"] == {"last": "L3"}
    assert [sorted(j.items()) for j in completions(events, "join")] == [
        [("left", {"text": f"L{i}"}), ("right", {"text": f"R{i}"})] for i in (1, 2, 3)
    ]
    assert len(completions(events, "merge")) == 3


async def test_after_a_loop_an_aggregator_joins_branches_that_all_come_after_it_once(
    nodes: ControlledNodes,
) -> None:
    document = workflow(
        [
            plugin_node("draft", "test.echo"),
            loop_router("nodes.draft.output.visit < 3"),
            plugin_node("publish", "test.echo"),
            plugin_node("X", "test.text", value="x{{ nodes.draft.output.visit }}"),
            plugin_node("Y", "test.sleep", seconds=0.01),
            {"id": "join", **AGGREGATE},
        ],
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
        {"joined": "nodes.join.output"},
    )
    events = await run(nodes, document)

    assert completions(events, "join") == [{"X": {"text": "x3"}, "Y": {"slept": 0.01}}]


# --- a plain node fed by parallel branches ---


async def test_a_plain_node_fed_by_parallel_branches_runs_once_per_arriving_branch(
    nodes: ControlledNodes,
) -> None:
    # `fast` arrives a step before `slow_tail` (after `slow`'s fan-out): `after` runs twice.
    document = workflow(
        [
            plugin_node("fast", "test.text", value="fast"),
            plugin_node("slow", "test.text", value="slow"),
            plugin_node("slow_tail", "test.text", value="tail"),
            plugin_node("slow_side", "test.text", value="side"),
            plugin_node("after", "test.echo"),
        ],
        [
            ("start", "fast"),
            ("start", "slow"),
            ("slow", "slow_tail"),
            ("slow", "slow_side"),
            ("fast", "after"),
            ("slow_tail", "after"),
        ],
        {"visits": "nodes.after.output.visit", "side": "nodes.slow_side.output.text"},
    )
    result = validate_spec(document, plugins=nodes.registry.catalog)
    assert [(w.path, w.code.value) for w in result.warnings] == [
        ("/nodes/5", "graph.parallel_join")
    ]

    events = await run(nodes, document)

    assert [output["visit"] for output in completions(events, "after")] == [1, 2]


async def test_a_plain_node_fed_by_branches_arriving_together_runs_once(
    nodes: ControlledNodes,
) -> None:
    document = workflow(
        [
            plugin_node("a", "test.text", value="a"),
            plugin_node("b", "test.text", value="b"),
            plugin_node("after", "test.echo"),
        ],
        [("start", "a"), ("start", "b"), ("a", "after"), ("b", "after")],
        {"visits": "nodes.after.output.visit"},
    )
    events = await run(nodes, document)

    assert [output["visit"] for output in completions(events, "after")] == [1]

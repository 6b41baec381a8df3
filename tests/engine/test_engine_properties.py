"""Properties of the compiler and engine over many graph shapes and many concurrent runs.

Random DAGs (hypothesis) of test nodes, routers and aggregators: exactly the nodes on taken
routes run, each once, never before the nodes it depends on, and the events stay well formed —
whatever segments the compiler cuts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.plugins import ControlledNodes, plugin_node, workflow
from support.runs import assert_well_formed, collect, terminal

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.registry import SourceSet
from agentflow_grpc.spec import WorkflowSpec, validate_spec

Edge = tuple[str, str, str | None]  # (from, to, route)


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[Edge], dict[str, bool]]:
    """Nodes n0…nk after `start`; each takes 1 to 3 distinct earlier nodes as predecessors.

    Nodes with several predecessors are aggregators (a plain node fed by parallel branches may
    run once per branch, by design). A node with one may be a router whose route `yes` is taken
    when a drawn constant holds, else `no`; the third value holds those decisions."""
    count = draw(st.integers(min_value=1, max_value=12))
    names = ["start"]
    nodes: list[dict[str, Any]] = []
    edges: list[Edge] = []
    decisions: dict[str, bool] = {}

    def route_of(parent: str) -> str | None:
        return draw(st.sampled_from(["yes", "no"])) if parent in decisions else None

    for index in range(count):
        name = f"n{index}"
        parents = draw(
            st.lists(st.sampled_from(names), min_size=1, max_size=min(3, len(names)), unique=True)
        )
        if len(parents) > 1:
            nodes.append({"id": name, "type": "aggregator", "config": {"strategy": "list"}})
        elif draw(st.booleans()):
            decisions[name] = draw(st.booleans())
            condition = "true" if decisions[name] else "false"
            nodes.append(
                {
                    "id": name,
                    "type": "router",
                    "config": {"routes": [{"name": "yes", "when": condition}], "default": "no"},
                }
            )
        else:
            seconds = draw(st.sampled_from([0, 0.001]))  # varied, so branches finish unevenly
            nodes.append(plugin_node(name, "test.sleep", seconds=seconds))
        edges.extend((parent, name, route_of(parent)) for parent in parents)
        names.append(name)
    for router in decisions:  # every route needs an edge
        for route in ("yes", "no"):
            if not any(e[0] == router and e[2] == route for e in edges):
                leaf = f"{router}_{route}"
                nodes.append(plugin_node(leaf, "test.echo"))
                edges.append((router, leaf, route))
    return nodes, edges, decisions


def expected_runs(
    nodes: list[dict[str, Any]], edges: list[Edge], decisions: dict[str, bool]
) -> tuple[set[str], list[Edge]]:
    """Which nodes run, and which edges fire, walking the DAG in creation order."""
    ran, fired = {"start"}, []
    for node in nodes:
        incoming = [e for e in edges if e[1] == node["id"]]
        live = [
            e
            for e in incoming
            if e[0] in ran and (e[2] is None or (e[2] == "yes") == decisions[e[0]])
        ]
        if live:
            ran.add(node["id"])
            fired.extend(live)
    return ran, fired


def valid_spec(document: dict[str, Any], nodes: ControlledNodes) -> WorkflowSpec:
    result = validate_spec(document, plugins=nodes.registry.catalog)
    assert result.spec is not None, result.violations
    assert result.ok, result.violations
    return result.spec


@pytest.mark.slow
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(dags())
def test_exactly_the_nodes_on_taken_routes_run_once_each_after_what_they_depend_on(
    dag: tuple[list[dict[str, Any]], list[Edge], dict[str, bool]],
) -> None:
    nodes_spec, edges, decisions = dag
    sources = {edge[0] for edge in edges}
    sinks = [node["id"] for node in nodes_spec if node["id"] not in sources]
    outputs = {s: f"nodes.{s}.output if nodes.{s} is defined else none" for s in sinks}
    controlled = ControlledNodes()
    spec = valid_spec(workflow(nodes_spec, edges, outputs), controlled)
    engine = ExecutionEngine(metrics=Metrics(), registry=controlled.registry, node_timeout=10)
    events = asyncio.run(collect(engine.execute(spec, {}, sources=SourceSet([]))))

    assert_well_formed(events)
    assert terminal(events).type is EventType.EXECUTION_COMPLETED, terminal(events).data
    ran, fired = expected_runs(nodes_spec, edges, decisions)
    completed = [e.node_id for e in events if e.type is EventType.NODE_COMPLETED]
    assert sorted(completed) == sorted(ran)
    position = {
        (e.type, e.node_id): index
        for index, e in enumerate(events)
        if e.type in (EventType.NODE_STARTED, EventType.NODE_COMPLETED)
    }
    for parent, child, _ in fired:
        assert (
            position[(EventType.NODE_COMPLETED, parent)] < position[(EventType.NODE_STARTED, child)]
        )


async def test_concurrent_runs_of_one_compiled_spec_do_not_mix_their_state() -> None:
    controlled = ControlledNodes()
    spec = valid_spec(
        workflow(
            [
                plugin_node("left", "test.sleep", seconds=0.01),
                plugin_node("right", "test.echo", value="{{ inputs.n * 2 }}"),
                {"id": "join", "type": "aggregator"},
            ],
            [("start", "left"), ("start", "right"), ("left", "join"), ("right", "join")],
            {"doubled": "nodes.join.output.right.value", "n": "nodes.start.output.n"},
            inputs={"n": {"type": "integer"}},
        ),
        controlled,
    )
    engine = ExecutionEngine(metrics=Metrics(), registry=controlled.registry)

    async def one(n: int) -> list[ExecutionEvent]:
        return await collect(engine.execute(spec, {"n": n}, sources=SourceSet([])))

    runs = await asyncio.gather(*(one(n) for n in range(30)))
    for n, events in enumerate(runs):
        assert_well_formed(events)
        assert terminal(events).data["outputs"] == {"doubled": n * 2, "n": n}
    assert len({events[0].execution_id for events in runs}) == 30
    assert (engine.cache.misses, engine.cache.hits) == (1, 29)

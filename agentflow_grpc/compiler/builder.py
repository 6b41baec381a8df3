"""Compile a WorkflowSpec into a LangGraph StateGraph.

- Each segment (a linear run of spec nodes, see `segments`) is one LangGraph node that runs its
  spec nodes in order.
- Plain edges between segments are LangGraph edges; several outgoing edges fan out in parallel.
- A router's routes are a conditional edge; a route may lead to several nodes.
- An aggregator is a deferred LangGraph node: it runs once, when every running branch has
  finished. A branch that a router did not take is not waited for (a waiting edge would wait for
  it forever); the price is that an aggregator also waits for unrelated work still running.
- Loops are bounded by routers' `max_iterations` and, as a backstop, LangGraph's recursion limit.
"""

from __future__ import annotations

import functools
from collections import ChainMap, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from agentflow_grpc.compiler.segments import Segment, Topology, split_segments
from agentflow_grpc.compiler.state import GraphState, RunContext
from agentflow_grpc.nodes.base import NodeContext, NodeResult
from agentflow_grpc.runtime.attempts import run_attempts
from agentflow_grpc.runtime.events import NO_USAGE, EventType, NodeEvent
from agentflow_grpc.runtime.inputs import InputChecker
from agentflow_grpc.runtime.templating import Renderer
from agentflow_grpc.spec import AnyNode, WorkflowSpec

MIN_RECURSION_LIMIT = 25
MAX_RECURSION_LIMIT = 100_000


@dataclass(frozen=True)
class CompiledWorkflow:
    """A spec ready to run many times: the LangGraph graph and everything derived once."""

    spec: WorkflowSpec
    spec_hash: str
    graph: CompiledStateGraph[Any, Any, Any, Any]
    topology: Topology
    recursion_limit: int
    input_checker: InputChecker
    renderer: Renderer = field(default_factory=Renderer)


def compile_workflow(spec: WorkflowSpec, spec_hash: str) -> CompiledWorkflow:
    topology = split_segments(spec)
    nodes = {node.id: node for node in spec.nodes}
    renderer = Renderer()
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(GraphState, context_schema=RunContext)
    for segment in topology.segments:
        builder.add_node(
            segment.name,
            _segment_function(segment, nodes, topology.predecessors, renderer),
            defer=nodes[segment.head].type == "aggregator",
        )
    _add_edges(builder, spec, topology)
    loops = sum(node.config.max_iterations or 0 for node in spec.nodes if node.type == "router")
    recursion_limit = min(
        MAX_RECURSION_LIMIT, max(MIN_RECURSION_LIMIT, len(topology.segments) * (loops + 1) + 2)
    )
    return CompiledWorkflow(
        spec=spec,
        spec_hash=spec_hash,
        graph=builder.compile(name=spec.name),
        topology=topology,
        recursion_limit=recursion_limit,
        input_checker=InputChecker(spec),
        renderer=renderer,
    )


def _add_edges(
    builder: StateGraph[Any, Any, Any, Any], spec: WorkflowSpec, topology: Topology
) -> None:
    node_types = {node.id: node.type for node in spec.nodes}
    segment_of = topology.segment_of
    input_id = next(node.id for node in spec.nodes if node.type == "input")
    builder.add_edge(START, segment_of[input_id])
    for segment in topology.segments:
        targets = topology.successors.get(segment.tail, [])
        if not targets:
            builder.add_edge(segment.name, END)
        elif node_types[segment.tail] == "router":
            _add_routes(builder, segment, targets, segment_of)
        else:
            for target, _ in targets:
                builder.add_edge(segment.name, segment_of[target])


def _add_routes(
    builder: StateGraph[Any, Any, Any, Any],
    segment: Segment,
    targets: list[tuple[str, str | None]],
    segment_of: Mapping[str, str],
) -> None:
    router = segment.tail
    by_route: dict[str, list[str]] = defaultdict(list)
    for target, route in targets:
        by_route[str(route)].append(segment_of[target])

    def choose(state: GraphState) -> list[str]:
        return by_route[state["routes"][router]]

    destinations = sorted({name for names in by_route.values() for name in names})
    builder.add_conditional_edges(segment.name, choose, destinations)


@dataclass(frozen=True, slots=True)
class _SegmentPlan:
    name: str
    members: tuple[AnyNode, ...]
    predecessors: Mapping[str, tuple[str, ...]]
    renderer: Renderer


def _segment_function(
    segment: Segment,
    nodes: dict[str, AnyNode],
    predecessors: dict[str, tuple[str, ...]],
    renderer: Renderer,
) -> Any:
    # A partial of a module-level function, not a closure: LangGraph scans closures' bytecode for
    # subgraphs at compile time (~1 ms per node), and AgentFlow has none.
    plan = _SegmentPlan(
        segment.name, tuple(nodes[node_id] for node_id in segment.node_ids), predecessors, renderer
    )
    return functools.partial(_run_segment, plan)


async def _run_segment(
    plan: _SegmentPlan, state: GraphState, runtime: Runtime[RunContext]
) -> dict[str, Any]:
    """Run a segment's nodes in order; return their part of the state."""
    run = runtime.context
    write = runtime.stream_writer
    inputs = state.get("inputs", {})
    produced: dict[str, Any] = {}
    outputs = ChainMap(produced, state.get("outputs", {}))
    earlier_visits = state.get("visits", {})
    visits: dict[str, int] = {}
    routes: dict[str, str] = {}
    messages: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    usage = NO_USAGE

    def emit(event: NodeEvent) -> None:
        if event.type is EventType.NODE_FAILED and event.data["will_retry"]:
            errors.append({"node_id": event.node_id, "attempt": event.attempt, **event.data})
        write(event)

    for node in plan.members:
        visits[node.id] = visits.get(node.id, 0) + 1
        visit = earlier_visits.get(node.id, 0) + visits[node.id]

        def attempt(number: int, node: AnyNode = node, visit: int = visit) -> Any:
            context = NodeContext(
                node=node,
                execution_id=run.execution_id,
                attempt=number,
                inputs=inputs,
                outputs=outputs,
                predecessors=plan.predecessors.get(node.id, ()),
                visits=visit,
                renderer=plan.renderer,
                sources=run.sources,
                emit=emit,
            )
            return run.registry.run(node, context)

        result: NodeResult = await run_attempts(
            node.id,
            node.type,
            node.retry,
            node.timeout or run.default_node_timeout,
            attempt,
            emit,
        )
        produced[node.id] = result.output
        if result.route is not None:
            routes[node.id] = result.route
        if result.usage is not None:
            usage = usage + result.usage
        messages.extend({"node_id": node.id, **message} for message in result.messages)
    update: dict[str, Any] = {"outputs": produced, "visits": visits}
    if routes:
        update["routes"] = routes
    if messages:
        update["messages"] = messages
    if errors:
        update["errors"] = errors
    if usage != NO_USAGE:
        update["usage"] = usage
    return update

"""Compile a WorkflowSpec into a LangGraph StateGraph.

- Each segment (a linear run of spec nodes, see `segments`) is one LangGraph node that runs its
  spec nodes in order.
- Plain edges between segments are LangGraph edges; several outgoing edges fan out in parallel.
- A router's routes are a conditional edge; a route may lead to several nodes.
- An aggregator is triggered by each of its branches and runs once every branch that will run
  has arrived (`joins`): a branch on a route a router did not take is not waited for. Routers
  also trigger the aggregators downstream of them, whose readiness their choice may change.
- Loops are bounded by routers' `max_iterations` and, as a backstop, LangGraph's recursion limit.
"""

from __future__ import annotations

import functools
from collections import ChainMap, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from agentflow_grpc.compiler.attempts import run_attempts
from agentflow_grpc.compiler.inputs import InputChecker
from agentflow_grpc.compiler.joins import JoinGraph
from agentflow_grpc.compiler.segments import Segment, Topology, split_segments
from agentflow_grpc.compiler.state import GraphState, RunContext
from agentflow_grpc.model.events import NO_USAGE, EventType, NodeEvent, ProviderCall
from agentflow_grpc.nodes.base import NodeContext, NodeResult
from agentflow_grpc.nodes.templating import Renderer
from agentflow_grpc.spec import AnyNode, WorkflowSpec

MIN_RECURSION_LIMIT = 25
# Nodes that call nothing outside the run: run again on a resume at no cost, with the same
# result, so nothing waits for their completion to be stored.
_PURE = frozenset({"input", "router"})
_NOT_REPLAYED: tuple[bool, Any] = (False, None)
MAX_RECURSION_LIMIT = 100_000


@dataclass(frozen=True)
class CompiledWorkflow:
    """A spec ready to run many times: the LangGraph graph and everything derived once."""

    spec: WorkflowSpec
    graph: CompiledStateGraph[Any, Any, Any, Any]
    recursion_limit: int
    input_checker: InputChecker
    renderer: Renderer

    @property
    def spec_hash(self) -> str:
        return self.spec.content_hash


def compile_workflow(spec: WorkflowSpec) -> CompiledWorkflow:
    topology = split_segments(spec)
    nodes = {node.id: node for node in spec.nodes}
    renderer = Renderer()
    predecessors = {
        node: tuple(source for source, _ in edges) for node, edges in topology.incoming.items()
    }
    node_types = {node.id: node.type for node in spec.nodes}
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(GraphState, context_schema=RunContext)
    joins = JoinGraph(
        incoming=topology.incoming,
        routers=frozenset(n for n, kind in node_types.items() if kind == "router"),
        input_id=next(n.id for n in spec.nodes if n.type == "input"),
    )
    for segment in topology.segments:
        is_join = nodes[segment.head].type == "aggregator"
        following = _next_segments(segment, node_types, topology)
        builder.add_node(
            segment.name,
            _segment_function(
                segment,
                nodes,
                predecessors,
                renderer,
                joins if is_join else None,
                following,
            ),
            destinations=following.all() or (END,),
        )
    builder.add_edge(START, topology.segment_of[joins.input_id])
    loops = sum(node.config.max_iterations or 0 for node in spec.nodes if node.type == "router")
    recursion_limit = min(
        MAX_RECURSION_LIMIT, max(MIN_RECURSION_LIMIT, len(topology.segments) * (loops + 1) + 2)
    )
    return CompiledWorkflow(
        spec=spec,
        graph=builder.compile(name=spec.name),
        recursion_limit=recursion_limit,
        input_checker=InputChecker(spec),
        renderer=renderer,
    )


@dataclass(frozen=True, slots=True)
class _Next:
    """Where a segment's run goes on: fixed successors, or by the route its router took."""

    always: tuple[str, ...] = ()
    by_route: Mapping[str, tuple[str, ...]] | None = None

    def all(self) -> tuple[str, ...]:
        names = list(self.always)
        for route_names in (self.by_route or {}).values():
            names.extend(route_names)
        return tuple(dict.fromkeys(names))


def _next_segments(segment: Segment, node_types: Mapping[str, str], topology: Topology) -> _Next:
    segment_of = topology.segment_of
    targets = topology.successors.get(segment.tail, [])
    if node_types[segment.tail] != "router":
        return _Next(always=tuple(dict.fromkeys(segment_of[target] for target, _ in targets)))
    # The route taken, plus every aggregator downstream: the choice may have made one ready.
    rechecked = [segment_of[a] for a in _aggregators_after(segment.tail, topology, node_types)]
    by_route: dict[str, list[str]] = defaultdict(list)
    for target, route in targets:
        by_route[str(route)].append(segment_of[target])
    return _Next(
        by_route={
            route: tuple(dict.fromkeys([*names, *rechecked])) for route, names in by_route.items()
        }
    )


def _aggregators_after(router: str, topology: Topology, node_types: Mapping[str, str]) -> list[str]:
    seen: set[str] = set()
    stack = [target for target, _ in topology.successors.get(router, [])]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(target for target, _ in topology.successors.get(node, []))
    return sorted(node for node in seen if node_types[node] == "aggregator")


@dataclass(frozen=True, slots=True)
class _SegmentPlan:
    name: str
    members: tuple[AnyNode, ...]
    predecessors: Mapping[str, tuple[str, ...]]
    renderer: Renderer
    join: JoinGraph | None  # for a segment that starts with an aggregator
    following: _Next


def _segment_function(
    segment: Segment,
    nodes: dict[str, AnyNode],
    predecessors: dict[str, tuple[str, ...]],
    renderer: Renderer,
    join: JoinGraph | None,
    following: _Next,
) -> Any:
    # A partial of a module-level function, not a closure: LangGraph scans closures' bytecode for
    # subgraphs at compile time (~1 ms per node), and AgentFlow has none.
    plan = _SegmentPlan(
        segment.name,
        tuple(nodes[node_id] for node_id in segment.node_ids),
        predecessors,
        renderer,
        join,
        following,
    )
    return functools.partial(_run_segment, plan)


async def _run_segment(
    plan: _SegmentPlan, state: GraphState, runtime: Runtime[RunContext]
) -> Command[str] | dict[str, Any]:
    """Run a segment's nodes in order; return their part of the state and where to go on.

    Successors are reached through `Command(goto=…)`, not static edges, because a static edge
    fires whenever its node runs, and an aggregator that is not ready yet runs without effect."""
    earlier_visits = state.get("visits", {})
    predecessors = plan.predecessors
    if plan.join is not None:
        head = plan.members[0].id
        branches = plan.join.fired_branches(head, earlier_visits, state.get("routes", {}))
        if branches is None:
            return {}  # not every branch that will run has arrived: a later one triggers again
        predecessors = {**predecessors, head: branches}
    run = runtime.context
    write = runtime.stream_writer
    inputs = state.get("inputs", {})
    produced: dict[str, Any] = {}
    outputs = ChainMap(produced, state.get("outputs", {}))
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

        def attempt(
            number: int, calls: list[ProviderCall], node: AnyNode = node, visit: int = visit
        ) -> Any:
            context = NodeContext(
                node=node,
                execution_id=run.execution_id,
                attempt=number,
                inputs=inputs,
                outputs=outputs,
                predecessors=predecessors.get(node.id, ()),
                visits=visit,
                renderer=plan.renderer,
                sources=run.sources,
                emit=emit,
                response_cache=run.response_cache,
                calls=calls,
            )
            return run.registry.run(node, context)

        result: NodeResult
        replayed, output = run.replay.take(node.id) if run.replay is not None else _NOT_REPLAYED
        if replayed:  # completed before the run was resumed: its recorded output
            route = output["route"] if node.type == "router" else None
            result = NodeResult(output, route=route)
        else:
            result = await run_attempts(
                node.id,
                node.type,
                node.retry,
                node.timeout or run.default_node_timeout,
                attempt,
                emit,
                run.metrics,
                interrupted=0 if run.replay is None else run.replay.interrupted(node.id),
                at_most_once=node.at_most_once,
            )
            if run.checkpoint is not None and node.type not in _PURE:
                await run.checkpoint(write)  # its output durable before anything goes on
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
    following = plan.following
    if following.by_route is not None:
        goto = following.by_route[routes[plan.members[-1].id]]
    else:
        goto = following.always
    return Command(update=update, goto=list(goto))

"""Identity and wiring: ids, edges, the input node, reachability, cycles, routes, joins."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from agentflow_grpc.spec.checks.context import CheckContext, article, listing, suggestion
from agentflow_grpc.spec.codes import Violation, ViolationCode, pointer
from agentflow_grpc.spec.nodes import RouterNode
from agentflow_grpc.spec.view import EdgeEntry


def check_node_ids(ctx: CheckContext) -> Iterator[Violation]:
    for entry in ctx.view.duplicate_nodes:
        first = ctx.view.by_id[entry.id]
        yield Violation(
            pointer("nodes", entry.index, "id"),
            ViolationCode.NODE_DUPLICATE_ID,
            f"node id '{entry.id}' is already used by /nodes/{first.index}; ids must be unique",
        )


def check_edges(ctx: CheckContext) -> Iterator[Violation]:
    by_id = ctx.view.by_id
    seen: dict[tuple[str, str, str | None], int] = {}
    for item in ctx.view.edges:
        edge = item.edge
        for end, node_id in (("from", edge.from_), ("to", edge.to)):
            if node_id not in by_id:
                yield Violation(
                    pointer("edges", item.index, end),
                    ViolationCode.EDGE_UNKNOWN_NODE,
                    f"edge {end} unknown node '{node_id}'{suggestion(node_id, by_id)}",
                )
        key = (edge.from_, edge.to, edge.route)
        if key in seen:
            yield Violation(
                pointer("edges", item.index),
                ViolationCode.EDGE_DUPLICATE,
                f"edge {edge.from_} -> {edge.to} repeats /edges/{seen[key]}",
            )
        else:
            seen[key] = item.index
        source = by_id.get(edge.from_)
        if edge.route is not None and source is not None and source.type not in (None, "router"):
            yield Violation(
                pointer("edges", item.index, "route"),
                ViolationCode.EDGE_ROUTE_ON_NON_ROUTER,
                f"edge from '{edge.from_}' names route '{edge.route}', but '{edge.from_}' is "
                f"{article(source.type)} node; only edges leaving a router carry a route",
            )


def check_input_node(ctx: CheckContext) -> Iterator[Violation]:
    if not ctx.input_ids and ctx.view.node_count > 0:  # no nodes at all: a schema violation
        yield Violation(
            "/nodes",
            ViolationCode.GRAPH_MISSING_INPUT,
            "the workflow has no input node; add exactly one node of type 'input' where runs start",
        )
    for extra_id in ctx.input_ids[1:]:
        entry = ctx.view.by_id[extra_id]
        yield Violation(
            pointer("nodes", entry.index, "type"),
            ViolationCode.GRAPH_MULTIPLE_INPUTS,
            f"'{extra_id}' is a second input node (the first is '{ctx.input_ids[0]}'); "
            "a workflow has exactly one",
        )
    input_ids = set(ctx.input_ids)
    for item in ctx.view.edges:
        if item.edge.to in input_ids:
            yield Violation(
                pointer("edges", item.index, "to"),
                ViolationCode.GRAPH_INPUT_HAS_INCOMING,
                f"edge enters input node '{item.edge.to}'; the input node is where runs start "
                "and takes no incoming edges",
            )


def check_reachability(ctx: CheckContext) -> Iterator[Violation]:
    facts = ctx.facts
    for entry in ctx.view.nodes:
        if entry.type == "input":
            continue
        if ctx.input_ids and entry.id not in facts.reachable_from_input:
            yield Violation(
                pointer("nodes", entry.index),
                ViolationCode.GRAPH_UNREACHABLE,
                f"node '{entry.id}' cannot be reached from input node '{ctx.input_ids[0]}'; "
                "connect it with an edge or remove it",
            )
    if not facts.reaches_output:  # the outputs read no known node: reported on the outputs
        return
    for entry in ctx.view.nodes:
        if entry.id not in facts.reaches_output:
            yield Violation(
                pointer("nodes", entry.index),
                ViolationCode.GRAPH_NO_PATH_TO_OUTPUT,
                f"nothing from node '{entry.id}' reaches a node that the outputs read; its result "
                "would be lost: connect it onward or read it in `outputs`",
            )


def check_cycles(ctx: CheckContext) -> Iterator[Violation]:
    edge_index = {(i.edge.from_, i.edge.to): i.index for i in ctx.view.edges}
    for cycle in ctx.facts.unbounded_cycles:
        first_edge = min(edge_index[step] for step in cycle)
        route = " -> ".join([step[0] for step in cycle] + [cycle[0][0]])
        yield Violation(
            pointer("edges", first_edge),
            ViolationCode.GRAPH_UNBOUNDED_CYCLE,
            f"cycle {route} has no bound; loops must pass through a router with `max_iterations`",
        )


def check_routers(ctx: CheckContext) -> Iterator[Violation]:
    edges_by_router: dict[str, list[EdgeEntry]] = defaultdict(list)
    for item in ctx.view.edges:
        edges_by_router[item.edge.from_].append(item)
    for entry in ctx.view.nodes:
        router = entry.model
        if not isinstance(router, RouterNode):
            continue
        names = router.route_names()
        seen: set[str] = set()
        for position, name in enumerate(names):
            if name in seen:
                yield Violation(
                    pointer("nodes", entry.index, *_route_location(names, position, "name")),
                    ViolationCode.ROUTER_DUPLICATE_ROUTE,
                    f"route name '{name}' is used twice in router '{entry.id}'",
                )
            seen.add(name)
        taken: set[str] = set()
        for item in edges_by_router.get(entry.id, []):
            route = item.edge.route
            if route is None or route not in seen:
                what = "has no `route`" if route is None else f"names unknown route '{route}'"
                yield Violation(
                    pointer("edges", item.index, "route" if route is not None else "from"),
                    ViolationCode.ROUTER_EDGE_WITHOUT_ROUTE,
                    f"edge from router '{entry.id}' {what}; routes: {listing(seen)}"
                    + (suggestion(route, seen) if route else ""),
                )
            else:
                taken.add(route)
        for position, name in enumerate(names):
            if name not in taken:
                yield Violation(
                    pointer("nodes", entry.index, *_route_location(names, position)),
                    ViolationCode.ROUTER_ROUTE_WITHOUT_EDGE,
                    f"route '{name}' of router '{entry.id}' has no edge; add an edge with "
                    f'"from": "{entry.id}", "route": "{name}"',
                )


def _route_location(names: list[str], position: int, *field: str) -> tuple[str | int, ...]:
    """Where route `position` of `RouterNode.route_names()` is written: the last is the default."""
    if position == len(names) - 1:
        return ("config", "default")
    return ("config", "routes", position, *field)


def check_aggregators(ctx: CheckContext) -> Iterator[Violation]:
    for entry in ctx.view.nodes:
        if entry.type != "aggregator":
            continue
        branches = ctx.facts.predecessors.get(entry.id, frozenset())
        if len(branches) < 2:
            yield Violation(
                pointer("nodes", entry.index),
                ViolationCode.AGGREGATOR_TOO_FEW_BRANCHES,
                f"aggregator '{entry.id}' joins {len(branches)} branch(es) "
                f"({listing(branches)}); it needs at least two incoming edges from parallel "
                "branches",
            )

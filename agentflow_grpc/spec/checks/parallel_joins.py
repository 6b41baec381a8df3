"""Plain nodes fed by parallel branches (`graph.parallel_join`, a warning).

A node other than an aggregator runs whenever one of its incoming edges fires: fed by branches
that can run in parallel it runs once per branch (once, when they arrive in the same step). That
is legal, and how loops re-enter a node, so it is only a warning. Two incoming edges are not
parallel when they need different routes of one router, or when one comes back from a node that
only the target itself leads to (a loop's way back).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import networkx as nx

from agentflow_grpc.spec.checks.context import CheckContext
from agentflow_grpc.spec.checks.wiring import Wiring
from agentflow_grpc.spec.codes import Violation, WarningCode, pointer

Decision = tuple[str, str]  # (router, route)


def check_parallel_joins(ctx: CheckContext) -> Iterator[Violation]:
    if not ctx.input_ids:
        return
    start = ctx.input_ids[0]
    reachable = ctx.facts.reachable_from_input
    predecessors = ctx.facts.predecessors
    merges = [
        entry
        for entry in ctx.view.nodes
        if entry.type not in ("aggregator", "input")
        and entry.id in reachable
        and len(predecessors.get(entry.id, ())) > 1
    ]
    if not merges:
        return
    graph = Wiring.of(ctx)
    required = _required_decisions(graph, start, reachable)
    dominators: dict[str, str] | None = None
    for entry in merges:
        live: list[tuple[str, str | None]] = []
        for source, route, _ in graph.incoming.get(entry.id, []):
            if source not in reachable:
                continue
            if ctx.facts.is_upstream(entry.id, source):  # in a loop with it: maybe a way back
                if dominators is None:
                    dominators = nx.immediate_dominators(graph.digraph, start)
                if _dominates(dominators, entry.id, source):
                    continue
            live.append((source, route))
        pair = _parallel_pair(live, required)
        if pair is not None:
            yield Violation(
                pointer("nodes", entry.index),
                WarningCode.GRAPH_PARALLEL_JOIN,
                f"node '{entry.id}' is fed by '{pair[0]}' and '{pair[1]}', which can run in "
                "parallel: it runs when either arrives, once per branch when they arrive at "
                "different times; to run it once with both results, put an aggregator in "
                "front of it",
            )


def _dominates(dominators: dict[str, str], node: str, other: str) -> bool:
    """Every path from the input node to `other` passes `node` (an edge back to it is a loop)."""
    current = other
    while True:
        if current == node:
            return True
        parent = dominators.get(current)
        if parent is None or parent == current:
            return False
        current = parent


def _parallel_pair(
    live: list[tuple[str, str | None]], required: dict[str, frozenset[Decision]]
) -> tuple[str, str] | None:
    for (first, first_route), (second, second_route) in itertools.combinations(live, 2):
        if first == second:
            continue  # two routes of one router: one of them is taken
        one = dict(_edge_decisions(first, first_route, required))
        other = _edge_decisions(second, second_route, required)
        if not any(router in one and one[router] != route for router, route in other):
            return first, second
    return None


def _edge_decisions(
    source: str, route: str | None, required: dict[str, frozenset[Decision]]
) -> frozenset[Decision]:
    own = required.get(source, frozenset())
    return own | {(source, route)} if route is not None else own


def _required_decisions(
    graph: Wiring, start: str, reachable: frozenset[str]
) -> dict[str, frozenset[Decision]]:
    """For each reachable node, the router decisions every path from the input node to it
    takes: two edges needing different routes of one router never fire in the same pass."""
    # Reverse postorder: every node after its predecessors, but for the ways back of loops.
    order = [n for n in reversed(list(nx.dfs_postorder_nodes(graph.digraph, start))) if n != start]
    required: dict[str, frozenset[Decision]] = {start: frozenset()}
    changed = True
    while changed:
        changed = False
        for node in order:
            known = [
                _edge_decisions(source, route, required)
                for source, route, _ in graph.incoming.get(node, [])
                if source in required
            ]
            if not known:
                continue
            value = frozenset.intersection(*known)
            if required.get(node) != value:
                required[node] = value
                changed = True
    return required

"""Aggregators a loop would put out of step (`aggregator.loop_mismatch`).

An aggregator is ready (`compiler/joins.py`) when none of its incoming edges is pending; a branch
has *fired in this pass* when its source has run more often than the aggregator, and is *dead*
when a router that ran in this pass took another route. That is exact when every branch runs at
most once per run of the aggregator and the routers upstream decide once per pass: always in a
graph without loops (mutually exclusive routes, nested routers included: the aggregator joins
the branches that ran). Loops can break it, so these shapes are refused:

- an aggregator inside a loop with a branch from outside it (the branch runs once: the second
  iteration would wait for it forever);
- an aggregator inside a loop with a branch that an iteration may skip (a router in the loop
  chooses) or run several times (an inner loop the aggregator is not in): from then on the
  branch's count lags or leads, and the aggregator waits forever or joins early;
- an aggregator after a loop with a branch that runs once per iteration (it would join each
  iteration's result), or with branches that leave different loops behind (while a loop still
  runs, its router's last choice makes the branch after it look dead: the join runs early).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator

import networkx as nx

from agentflow_grpc.spec.checks.context import CheckContext
from agentflow_grpc.spec.checks.wiring import Wiring, is_cyclic
from agentflow_grpc.spec.codes import Violation, ViolationCode, pointer
from agentflow_grpc.spec.nodes import RouterNode
from agentflow_grpc.spec.view import NodeEntry

MAX_ROUTE_CHOICES = 4096
"""Beyond this many combinations of the routes of a loop's routers, the skip check is left out."""


def check_aggregator_loops(ctx: CheckContext) -> Iterator[Violation]:
    aggregators = [entry for entry in ctx.view.nodes if entry.type == "aggregator"]
    bounded = any(
        isinstance(entry.model, RouterNode) and entry.model.config.max_iterations
        for entry in ctx.view.nodes
    )
    if not aggregators or not (bounded or ctx.facts.unbounded_cycles):
        return  # no loops
    graph = Wiring.of(ctx)
    graph.find_loops()
    if not graph.loop_of:  # no loops: joins are exact
        return
    repeats = _repeating(graph)
    for entry in aggregators:
        if entry.id in graph.loop_of:
            yield from _inside_loop(graph, entry)
        else:
            yield from _after_loops(graph, entry, repeats)


def _inside_loop(graph: Wiring, entry: NodeEntry) -> Iterator[Violation]:
    aggregator, loop = entry.id, graph.loop_of[entry.id]
    flagged: set[str] = set()
    branches = graph.incoming.get(aggregator, [])
    for source, _, index in branches:
        if source == aggregator and source not in flagged:
            flagged.add(source)
            yield _mismatch(
                index,
                f"aggregator '{aggregator}' is fed by itself: it would wait for its own output "
                "before it could run; read its previous output in a template instead",
            )
        elif source not in loop and source not in flagged:
            flagged.add(source)
            yield _mismatch(
                index,
                f"aggregator '{aggregator}' is inside a loop, but its branch from '{source}' is "
                f"not: '{source}' runs once, so from the loop's second iteration on "
                f"'{aggregator}' would wait for it forever; read `nodes.{source}.output` in a "
                "template instead, or join outside the loop",
            )
    without_join = graph.digraph.subgraph(loop - {aggregator})
    inner = {n: m for m in nx.strongly_connected_components(without_join) for n in m}
    for source, _, index in branches:
        if source in loop and source not in flagged and is_cyclic(without_join, inner[source]):
            flagged.add(source)
            yield _mismatch(
                index,
                f"'{source}' is in a loop that aggregator '{aggregator}' is not in: it can run "
                f"several times per run of '{aggregator}', which would join early; join inside "
                "the inner loop, or after it",
            )
    for source, index, choice in _skippable_branches(graph, aggregator, loop):
        if source not in flagged:
            flagged.add(source)
            yield _mismatch(
                index,
                f"in an iteration where {choice}, '{source}' does not run but aggregator "
                f"'{aggregator}' does: from then on '{aggregator}' would wait for '{source}' "
                "forever; join the routes with a plain node (it runs when one of them arrives), "
                "or keep the aggregator out of the loop",
            )


def _skippable_branches(
    graph: Wiring, aggregator: str, loop: frozenset[str]
) -> Iterator[tuple[str, int, str]]:
    """Branches in the loop that some choice of its routers' routes skips in an iteration that
    reaches the aggregator again: (source, edge index, the choice in words)."""
    options: dict[str, list[tuple[str, frozenset[str]]]] = {}
    for router in sorted(n for n in loop if graph.is_router(n)):
        by_route: dict[str, set[str]] = defaultdict(set)
        for target, route in graph.outgoing.get(router, []):
            by_route[str(route)].add(target)
        distinct: dict[frozenset[str], str] = {}
        for route, targets in by_route.items():
            distinct.setdefault(frozenset(targets & loop), route)
        options[router] = [(route, targets) for targets, route in distinct.items()]
    combinations = 1
    for choices in options.values():
        combinations *= len(choices)
    if combinations > MAX_ROUTE_CHOICES:
        return
    branches = [(s, i) for s, _, i in graph.incoming.get(aggregator, []) if s in loop]
    reported: set[str] = set()
    routers = list(options)
    for picked in itertools.product(*(options[r] for r in routers)):
        choice = dict(zip(routers, picked, strict=True))
        ran, again = _one_iteration(graph, aggregator, loop, choice)
        if not again:
            continue
        words = ", ".join(f"router '{r}' takes route '{choice[r][0]}'" for r in routers if r in ran)
        for source, index in branches:
            if source not in ran and source not in reported:
                reported.add(source)
                yield source, index, words or "the loop goes round"


def _one_iteration(
    graph: Wiring,
    aggregator: str,
    loop: frozenset[str],
    choice: dict[str, tuple[str, frozenset[str]]],
) -> tuple[set[str], bool]:
    """What runs in the loop after the aggregator, routers taking `choice`, until it is reached
    again: the nodes that ran, and whether the aggregator was reached."""
    ran: set[str] = set()
    stack = [aggregator]
    reached = False
    while stack:
        node = stack.pop()
        targets = (
            choice[node][1]
            if node in choice
            else {t for t, _ in graph.outgoing.get(node, []) if t in loop}
        )
        for target in targets:
            if target == aggregator:
                reached = True
            elif target not in ran:
                ran.add(target)
                stack.append(target)
    return ran, reached


def _after_loops(graph: Wiring, entry: NodeEntry, repeats: set[str]) -> Iterator[Violation]:
    aggregator = entry.id
    branches = graph.incoming.get(aggregator, [])
    flagged = False
    for source, _, index in branches:
        if source in repeats:
            flagged = True
            yield _mismatch(
                index,
                f"'{source}' runs once per iteration of a loop that aggregator '{aggregator}' is "
                f"not in: '{aggregator}' would join each iteration's result as it comes; join "
                "from a node on the route that leaves the loop",
            )
    if flagged:
        return
    behind = {source: _loops_before(graph, source) for source, _, _ in branches}
    if len(set(behind.values())) > 1:
        ordered = sorted(behind, key=lambda source: (len(behind[source]), source))
        first = ordered[0]
        second = next(source for source in ordered if behind[source] != behind[first])
        routers = sorted(
            n for loop in behind[second] - behind[first] for n in loop if graph.is_router(n)
        )
        yield _mismatch_at(
            pointer("nodes", entry.index),
            f"aggregator '{aggregator}' joins '{second}', which comes after a loop (router "
            f"{', '.join(repr(r) for r in routers)}), and '{first}', which does not: while the "
            f"loop runs, '{second}' looks like a route not taken and '{aggregator}' would join "
            "without it; let every branch come after the loop, or read the other result in a "
            "template",
        )


def _loops_before(graph: Wiring, node: str) -> frozenset[frozenset[str]]:
    """The loops a node comes after (or is in)."""
    upstream = nx.ancestors(graph.digraph, node) | {node}
    return frozenset(graph.loop_of[n] for n in upstream if n in graph.loop_of)


def _repeating(graph: Wiring) -> set[str]:
    """Nodes that can run more than once: those in loops, and those an edge from one reaches,
    unless through the route leaving a loop whose every cycle passes its router (taken once)."""
    repeats: set[str] = set(graph.loop_of)
    condensed = nx.condensation(graph.digraph)
    reentered: dict[frozenset[str], bool] = {}
    for component in nx.topological_sort(condensed):
        members = frozenset(condensed.nodes[component]["members"])
        if members & graph.loop_of.keys():
            reentered[members] = any(
                source in repeats and source not in members
                for node in members
                for source, _, _ in graph.incoming.get(node, [])
            )
            continue
        (node,) = members
        for source, _, _ in graph.incoming.get(node, []):
            if source in repeats and not _leaves_once(graph, source, reentered):
                repeats.add(node)
                break
    return repeats


def _leaves_once(graph: Wiring, source: str, reentered: dict[frozenset[str], bool]) -> bool:
    loop = graph.loop_of.get(source)
    if loop is None or not graph.is_router(source) or reentered.get(loop, True):
        return False
    return bool(nx.is_directed_acyclic_graph(graph.digraph.subgraph(loop - {source})))


def _mismatch(edge_index: int, message: str) -> Violation:
    return _mismatch_at(pointer("edges", edge_index), message)


def _mismatch_at(path: str, message: str) -> Violation:
    return Violation(path, ViolationCode.AGGREGATOR_LOOP_MISMATCH, message)

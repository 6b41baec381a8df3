"""The wiring the join checks read: edges between known nodes, by node, and the loops (cyclic
strongly connected parts of the graph) each node is in."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import networkx as nx

from agentflow_grpc.spec.checks.context import CheckContext

Incoming = tuple[str, str | None, int]  # (source node, route, edge index)


@dataclass(slots=True)
class Wiring:
    """The spec's wiring between known nodes, with its loops (cyclic strongly connected parts)."""

    digraph: nx.DiGraph[str]
    types: dict[str, str | None]
    outgoing: dict[str, list[tuple[str, str | None]]]
    incoming: dict[str, list[Incoming]]
    # node → the nodes of its loop, for nodes in loops; filled by `find_loops`
    loop_of: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, ctx: CheckContext) -> Wiring:
        view = ctx.view
        digraph: nx.DiGraph[str] = nx.DiGraph()
        digraph.add_nodes_from(entry.id for entry in view.nodes)
        outgoing: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
        incoming: dict[str, list[Incoming]] = defaultdict(list)
        for item in view.edges:
            edge = item.edge
            if edge.from_ in view.by_id and edge.to in view.by_id:
                digraph.add_edge(edge.from_, edge.to)
                outgoing[edge.from_].append((edge.to, edge.route))
                incoming[edge.to].append((edge.from_, edge.route, item.index))
        return cls(digraph, {e.id: e.type for e in view.nodes}, outgoing, incoming)

    def find_loops(self) -> None:
        """Fill `loop_of`."""
        for members in nx.strongly_connected_components(self.digraph):
            if is_cyclic(self.digraph, members):
                loop = frozenset(members)
                self.loop_of.update(dict.fromkeys(loop, loop))

    def is_router(self, node: str) -> bool:
        return self.types.get(node) == "router"


def is_cyclic(digraph: nx.DiGraph[str], members: set[str] | frozenset[str]) -> bool:
    if len(members) > 1:
        return True
    (only,) = members
    return bool(digraph.has_edge(only, only))

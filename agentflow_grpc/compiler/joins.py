"""When an aggregator may run: after every incoming branch that will run has arrived.

LangGraph's own joins do not fit workflows with routers: a waiting edge waits for a branch that a
router did not take forever, and deferred nodes all run together at the end, ignoring each other
(an aggregator feeding another would run alongside it). So an aggregator is triggered by each of
its branches like any node, and decides from the state whether it is ready:

- an incoming edge has *fired* when its source has run in this pass (and, for a router, took the
  edge's route);
- it is *dead* when its source is a router that took another route, or a node that cannot run
  any more (every edge into it dead);
- otherwise it is *pending*. The aggregator runs when no edge is pending and one has fired.

A router's decision can make a waiting aggregator ready without any branch arriving, so routers
also trigger the aggregators downstream of them to check again. "In this pass" means: run more
often than the aggregator itself (aggregators inside loops join once per iteration).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

Edge = tuple[str, str | None]  # (source node, route)


class _Edge(Enum):
    FIRED = "fired"
    DEAD = "dead"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class JoinGraph:
    """The static facts the readiness check needs."""

    incoming: Mapping[str, tuple[Edge, ...]]  # node → its incoming edges, in edge order
    routers: frozenset[str]
    input_id: str

    def fired_branches(
        self, aggregator: str, visits: Mapping[str, int], routes: Mapping[str, str]
    ) -> tuple[str, ...] | None:
        """The sources of the fired edges when the aggregator is ready, else None."""
        check = _Pass(self, visits.get(aggregator, 0), visits, routes)
        fired: list[str] = []
        for edge in self.incoming.get(aggregator, ()):
            state = check.edge(edge)
            if state is _Edge.PENDING:
                return None
            if state is _Edge.FIRED and edge[0] not in fired:
                fired.append(edge[0])
        return tuple(fired) or None


@dataclass(slots=True)
class _Pass:
    """One readiness check: the state it reads, and the deadness found so far."""

    graph: JoinGraph
    bar: int  # a node has run in this pass if it ran more often than the aggregator
    visits: Mapping[str, int]
    routes: Mapping[str, str]
    dead: dict[str, bool] = field(default_factory=dict)

    def edge(self, edge: Edge) -> _Edge:
        source, route = edge
        if self.visits.get(source, 0) > self.bar:
            if source in self.graph.routers and self.routes.get(source) != route:
                return _Edge.DEAD
            return _Edge.FIRED
        return _Edge.DEAD if self.is_dead(source) else _Edge.PENDING

    def is_dead(self, node: str) -> bool:
        """A node that has not run in this pass and cannot any more."""
        if node in self.dead:
            return self.dead[node]
        if node == self.graph.input_id:
            return False
        self.dead[node] = False  # on a cycle: assume it may still run
        dead = all(self.edge(e) is _Edge.DEAD for e in self.graph.incoming.get(node, ()))
        self.dead[node] = dead
        return dead

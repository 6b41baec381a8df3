"""Graph facts the validator needs, computed once per spec with networkx.

`is_upstream` answers "can node A have run before node B?" in O(1): ancestors are kept as bit sets
over the condensation (the DAG of strongly connected components), built in one topological pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import networkx as nx


@dataclass(frozen=True, slots=True)
class GraphFacts:
    reachable_from_input: frozenset[str]
    reaches_output: frozenset[str]
    unbounded_cycles: tuple[tuple[tuple[str, str], ...], ...]  # each cycle as its edges
    predecessors: dict[str, frozenset[str]]
    _component: dict[str, int]
    _ancestors: dict[int, int]  # component -> bit set of ancestor components

    def is_upstream(self, ancestor: str, node: str) -> bool:
        """True when `ancestor` can run before `node` in some execution (loops count)."""
        ancestor_component = self._component.get(ancestor)
        node_component = self._component.get(node)
        if ancestor_component is None or node_component is None:
            return False
        return bool(self._ancestors[node_component] >> ancestor_component & 1)


def analyze_graph(
    node_ids: Iterable[str],
    edges: Iterable[tuple[str, str]],
    *,
    input_id: str | None,
    output_node_ids: Iterable[str],
    bounded_routers: Iterable[str],
) -> GraphFacts:
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(node_ids)
    graph.add_edges_from(edges)

    reachable: set[str] = set()
    if input_id is not None and input_id in graph:
        reachable = nx.descendants(graph, input_id) | {input_id}

    reaches_output: set[str] = set()
    reversed_graph = graph.reverse(copy=False)
    for node in output_node_ids:
        if node in graph and node not in reaches_output:  # a seen node's ancestors are seen too
            reaches_output |= nx.descendants(reversed_graph, node) | {node}

    components = list(nx.strongly_connected_components(graph))
    cyclic = [members for members in components if _is_cyclic(graph, members)]
    component, ancestors = _ancestor_bitsets(graph, components, has_cycles=bool(cyclic))
    return GraphFacts(
        reachable_from_input=frozenset(reachable),
        reaches_output=frozenset(reaches_output),
        unbounded_cycles=_unbounded_cycles(graph, cyclic, set(bounded_routers)),
        predecessors={node: frozenset(graph.predecessors(node)) for node in graph},
        _component=component,
        _ancestors=ancestors,
    )


def _is_cyclic(graph: nx.DiGraph[str], members: set[str]) -> bool:
    if len(members) > 1:
        return True
    (only,) = members
    return bool(graph.has_edge(only, only))


def _ancestor_bitsets(
    graph: nx.DiGraph[str], components: list[set[str]], has_cycles: bool
) -> tuple[dict[str, int], dict[int, int]]:
    """Each node's component number, and each component's ancestors as a bit set."""
    if not has_cycles:  # every component is one node: the graph is its own condensation
        number = {node: index for index, node in enumerate(graph)}
        return number, _propagate(graph, number.__getitem__, cyclic=set())
    dag = nx.condensation(graph, scc=components)
    cyclic = {scc for scc in dag if _is_cyclic(graph, dag.nodes[scc]["members"])}
    return dag.graph["mapping"], _propagate(dag, int, cyclic)


def _propagate(
    dag: nx.DiGraph[Any], number_of: Callable[[Any], int], cyclic: set[int]
) -> dict[int, int]:
    """One pass in topological order: a component's ancestors are its parents and theirs."""
    ancestors: dict[int, int] = {}
    for vertex in nx.topological_sort(dag):
        bits = 0
        for parent in dag.predecessors(vertex):
            parent_number = number_of(parent)
            bits |= ancestors[parent_number] | (1 << parent_number)
        own = number_of(vertex)
        if own in cyclic:  # inside a loop a component precedes itself
            bits |= 1 << own
        ancestors[own] = bits
    return ancestors


def _unbounded_cycles(
    graph: nx.DiGraph[str], cyclic_components: list[set[str]], bounded_routers: set[str]
) -> tuple[tuple[tuple[str, str], ...], ...]:
    """One cycle per strongly connected component left when bounded routers are removed."""
    cycles: list[tuple[tuple[str, str], ...]] = []
    for component in cyclic_components:
        unbounded = graph.subgraph(component - bounded_routers)
        for members in nx.strongly_connected_components(unbounded):
            if not _is_cyclic(unbounded, members):
                continue
            cycle = nx.find_cycle(unbounded.subgraph(members), source=min(members))
            cycles.append(tuple((u, v) for u, v, *_ in cycle))
    return tuple(sorted(cycles))

"""Graph facts: reachability, paths to outputs, upstream relation, unbounded cycles."""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentflow_grpc.spec.graph import GraphFacts, analyze_graph


def facts(
    edges: Iterable[tuple[str, str]],
    *,
    nodes: Iterable[str] = (),
    input_id: str | None = "in",
    outputs: Iterable[str] = (),
    bounded: Iterable[str] = (),
) -> GraphFacts:
    edges = list(edges)
    node_ids = list(dict.fromkeys([*nodes, *(end for edge in edges for end in edge)]))
    return analyze_graph(
        node_ids,
        edges,
        input_id=input_id,
        output_node_ids=outputs,
        bounded_routers=bounded,
    )


def assert_is_cycle(cycle: tuple[tuple[str, str], ...], members: set[str]) -> None:
    """`cycle` is a closed walk through exactly `members`: each edge leaves where the last ended."""
    assert {u for u, _ in cycle} == members
    for (_, end), (start, _) in zip(cycle, cycle[1:] + cycle[:1], strict=True):
        assert end == start


# --- reachability ---


def test_reachable_from_input() -> None:
    graph = facts([("in", "a"), ("a", "b"), ("x", "y")], nodes=["lonely"])

    assert graph.reachable_from_input == {"in", "a", "b"}


def test_no_input_means_nothing_reachable() -> None:
    graph = facts([("in", "a")], input_id=None)

    assert graph.reachable_from_input == frozenset()


def test_unknown_input_means_nothing_reachable() -> None:
    graph = facts([("in", "a")], input_id="ghost")

    assert graph.reachable_from_input == frozenset()


def test_reaches_output() -> None:
    graph = facts(
        [("in", "a"), ("a", "out"), ("in", "dead_end"), ("x", "out")],
        outputs=["out"],
    )

    assert graph.reaches_output == {"in", "a", "x", "out"}
    assert "dead_end" not in graph.reaches_output


def test_reaches_any_of_several_outputs() -> None:
    graph = facts([("in", "a"), ("in", "b"), ("a", "c")], outputs=["c", "b", "ghost"])

    assert graph.reaches_output == {"in", "a", "b", "c"}


def test_output_inside_ancestors_of_another_output() -> None:
    graph = facts([("in", "a"), ("a", "b")], outputs=["b", "a"])

    assert graph.reaches_output == {"in", "a", "b"}


def test_predecessors() -> None:
    graph = facts([("in", "a"), ("in", "b"), ("a", "c"), ("b", "c")])

    assert graph.predecessors["c"] == {"a", "b"}
    assert graph.predecessors["in"] == frozenset()


# --- is_upstream ---


def test_chain() -> None:
    graph = facts([("in", "a"), ("a", "b"), ("b", "c")])

    assert graph.is_upstream("in", "c")
    assert graph.is_upstream("a", "b")
    assert graph.is_upstream("a", "c")
    assert not graph.is_upstream("c", "a")
    assert not graph.is_upstream("b", "a")


def test_not_in_a_cycle_is_not_upstream_of_itself() -> None:
    graph = facts([("in", "a"), ("a", "b")])

    for node in ("in", "a", "b"):
        assert not graph.is_upstream(node, node)


def test_fan_out_siblings_are_not_upstream_of_each_other() -> None:
    graph = facts([("in", "a"), ("in", "b"), ("a", "join"), ("b", "join")])

    assert not graph.is_upstream("a", "b")
    assert not graph.is_upstream("b", "a")
    assert graph.is_upstream("a", "join")
    assert graph.is_upstream("b", "join")
    assert graph.is_upstream("in", "join")
    assert not graph.is_upstream("join", "a")


def test_loop_members_are_upstream_of_each_other_and_themselves() -> None:
    graph = facts([("in", "a"), ("a", "b"), ("b", "c"), ("c", "a"), ("c", "after")])
    loop = ("a", "b", "c")

    for first in loop:
        for second in loop:
            assert graph.is_upstream(first, second), (first, second)
        assert graph.is_upstream(first, "after")
        assert graph.is_upstream("in", first)
        assert not graph.is_upstream("after", first)
        assert not graph.is_upstream(first, "in")
    assert not graph.is_upstream("in", "in")
    assert not graph.is_upstream("after", "after")


def test_self_loop_is_upstream_of_itself() -> None:
    graph = facts([("in", "a"), ("a", "a"), ("a", "b")])

    assert graph.is_upstream("a", "a")
    assert graph.is_upstream("a", "b")
    assert not graph.is_upstream("b", "b")
    assert not graph.is_upstream("b", "a")


def test_two_separate_loops() -> None:
    graph = facts([("in", "a"), ("a", "b"), ("b", "a"), ("b", "c"), ("c", "d"), ("d", "c")])

    assert graph.is_upstream("a", "d")
    assert graph.is_upstream("d", "c")
    assert not graph.is_upstream("c", "a")
    assert not graph.is_upstream("d", "b")


@pytest.mark.parametrize(("ancestor", "node"), [("ghost", "a"), ("a", "ghost"), ("x", "y")])
def test_unknown_ids_are_not_upstream(ancestor: str, node: str) -> None:
    graph = facts([("in", "a"), ("a", "a")])

    assert not graph.is_upstream(ancestor, node)


def test_long_chain_uses_many_components() -> None:
    chain = [f"n{i}" for i in range(200)]
    graph = facts(zip(["in", *chain], chain, strict=False))

    assert graph.is_upstream("in", "n199")
    assert graph.is_upstream("n3", "n150")
    assert not graph.is_upstream("n150", "n3")


def test_empty_graph() -> None:
    graph = analyze_graph([], [], input_id=None, output_node_ids=[], bounded_routers=[])

    assert graph.reachable_from_input == frozenset()
    assert graph.reaches_output == frozenset()
    assert graph.unbounded_cycles == ()
    assert not graph.is_upstream("a", "a")


# --- unbounded cycles ---


def test_acyclic_graph_has_no_unbounded_cycles() -> None:
    graph = facts([("in", "a"), ("in", "b"), ("a", "c"), ("b", "c")])

    assert graph.unbounded_cycles == ()


def test_unbounded_cycle_is_reported_with_its_edges() -> None:
    graph = facts([("in", "a"), ("a", "b"), ("b", "c"), ("c", "a"), ("c", "out")])

    assert len(graph.unbounded_cycles) == 1
    cycle = graph.unbounded_cycles[0]
    assert set(cycle) == {("a", "b"), ("b", "c"), ("c", "a")}
    assert_is_cycle(cycle, {"a", "b", "c"})


def test_bounded_router_breaks_the_cycle() -> None:
    graph = facts([("in", "a"), ("a", "r"), ("r", "a"), ("r", "out")], bounded=["r"])

    assert graph.unbounded_cycles == ()
    # Being bounded changes nothing about which nodes can run before which.
    assert graph.is_upstream("a", "r")
    assert graph.is_upstream("r", "a")


def test_bounded_router_elsewhere_does_not_break_the_cycle() -> None:
    graph = facts([("in", "r"), ("r", "a"), ("a", "b"), ("b", "a")], bounded=["r"])

    assert graph.unbounded_cycles == ((("a", "b"), ("b", "a")),)


def test_cycle_avoiding_the_bounded_router_is_still_unbounded() -> None:
    edges = [("in", "a"), ("a", "r"), ("r", "a"), ("a", "c"), ("c", "a")]

    graph = facts(edges, bounded=["r"])

    assert graph.unbounded_cycles == ((("a", "c"), ("c", "a")),)


def test_self_loop_is_an_unbounded_cycle() -> None:
    graph = facts([("in", "a"), ("a", "a")])

    assert graph.unbounded_cycles == ((("a", "a"),),)


def test_self_loop_on_a_bounded_router_is_bounded() -> None:
    graph = facts([("in", "r"), ("r", "r")], bounded=["r"])

    assert graph.unbounded_cycles == ()


def test_each_unbounded_component_is_reported_once_in_order() -> None:
    edges = [("in", "x"), ("x", "y"), ("y", "x"), ("y", "b"), ("b", "a"), ("a", "b")]

    graph = facts(edges)

    assert len(graph.unbounded_cycles) == 2
    assert graph.unbounded_cycles == tuple(sorted(graph.unbounded_cycles))
    assert {frozenset(cycle) for cycle in graph.unbounded_cycles} == {
        frozenset({("a", "b"), ("b", "a")}),
        frozenset({("x", "y"), ("y", "x")}),
    }


def test_larger_component_reports_one_real_cycle() -> None:
    # Two cycles sharing `a`: one strongly connected component, one reported cycle.
    edges = [("in", "a"), ("a", "b"), ("b", "a"), ("a", "c"), ("c", "d"), ("d", "a")]

    graph = facts(edges)

    assert len(graph.unbounded_cycles) == 1
    cycle = graph.unbounded_cycles[0]
    assert set(cycle) <= set(edges)
    assert_is_cycle(cycle, {u for u, _ in cycle})


# --- against brute force, on random graphs ---

_NODES = [f"n{i}" for i in range(7)]


@st.composite
def graphs(draw: st.DrawFn) -> tuple[list[tuple[str, str]], set[str], list[str]]:
    edges = draw(st.lists(st.tuples(st.sampled_from(_NODES), st.sampled_from(_NODES)), max_size=14))
    bounded = draw(st.sets(st.sampled_from(_NODES), max_size=2))
    outputs = draw(st.lists(st.sampled_from([*_NODES, "ghost"]), max_size=2))
    return edges, bounded, outputs


def _has_path(graph: nx.DiGraph[str], start: str, end: str) -> bool:
    """A path of at least one edge from `start` to `end`."""
    return any(
        successor == end or end in nx.descendants(graph, successor)
        for successor in graph.successors(start)
    )


@settings(max_examples=300, deadline=None, database=None)
@given(graphs())
def test_facts_match_brute_force(case: tuple[list[tuple[str, str]], set[str], list[str]]) -> None:
    edges, bounded, outputs = case
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(_NODES)
    graph.add_edges_from(edges)

    result = analyze_graph(
        _NODES, edges, input_id="n0", output_node_ids=outputs, bounded_routers=bounded
    )

    assert result.reachable_from_input == nx.descendants(graph, "n0") | {"n0"}
    expected_reaching = set()
    for output in outputs:
        if output in graph:
            expected_reaching |= nx.ancestors(graph, output) | {output}
    assert result.reaches_output == expected_reaching
    for ancestor in _NODES:
        for node in _NODES:
            assert result.is_upstream(ancestor, node) == _has_path(graph, ancestor, node), (
                ancestor,
                node,
            )
    unbounded = graph.subgraph(node for node in _NODES if node not in bounded)
    cyclic_components = [
        members
        for members in nx.strongly_connected_components(unbounded)
        if len(members) > 1 or any(unbounded.has_edge(m, m) for m in members)
    ]
    # One cycle in each component that is still cyclic without the bounded routers.
    assert sorted(
        next(i for i, members in enumerate(cyclic_components) if cycle[0][0] in members)
        for cycle in result.unbounded_cycles
    ) == list(range(len(cyclic_components)))
    for cycle in result.unbounded_cycles:
        assert all(graph.has_edge(u, v) for u, v in cycle)
        assert not {u for u, _ in cycle} & bounded
        assert_is_cycle(cycle, {u for u, _ in cycle})
    assert result.unbounded_cycles == tuple(sorted(result.unbounded_cycles))

"""Split a workflow graph into segments: maximal linear runs of nodes, each one LangGraph node.

LangGraph runs in supersteps: every node of a step must finish before the next step starts. If
every spec node were its own LangGraph node, a branch of two 100 ms nodes joined with a branch
of one 300 ms node would take 400 ms (step 1: 100 ‖ 300, step 2: 100). Running a linear run of
nodes inside one LangGraph node removes that coupling: the run takes its critical path, 300 ms.

A node starts a new segment when it is the input node, has not exactly one incoming edge, is an
aggregator (a join), or follows a node that has several outgoing edges or is a router (whose
choice LangGraph makes as a conditional edge). Every other node continues its predecessor's
segment.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from agentflow_grpc.model.errors import AgentFlowError
from agentflow_grpc.spec import WorkflowSpec


class CompileError(AgentFlowError):
    """A spec the compiler cannot turn into a graph (only specs that skipped validation)."""

    code = "compile_error"


@dataclass(frozen=True, slots=True)
class Segment:
    name: str  # the LangGraph node name: the id of the first spec node
    node_ids: tuple[str, ...]

    @property
    def head(self) -> str:
        return self.node_ids[0]

    @property
    def tail(self) -> str:
        return self.node_ids[-1]


@dataclass(frozen=True, slots=True)
class Topology:
    segments: tuple[Segment, ...]
    segment_of: dict[str, str]  # spec node id → segment name
    successors: dict[str, list[tuple[str, str | None]]]  # node → [(target, route)] in edge order
    incoming: dict[str, tuple[tuple[str, str | None], ...]]  # node → [(source, route)]


def split_segments(spec: WorkflowSpec) -> Topology:
    node_types = {node.id: node.type for node in spec.nodes}
    successors: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    incoming: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for edge in spec.edges:
        successors[edge.from_].append((edge.to, edge.route))
        incoming[edge.to].append((edge.from_, edge.route))

    def starts_segment(node_id: str) -> bool:
        edges_in = incoming[node_id]
        if node_types[node_id] in ("input", "aggregator") or len(edges_in) != 1:
            return True
        previous = edges_in[0][0]
        return node_types[previous] == "router" or len(successors[previous]) != 1

    segments: list[Segment] = []
    segment_of: dict[str, str] = {}
    for node in spec.nodes:
        if not starts_segment(node.id):
            continue
        chain = [node.id]
        while len(successors[chain[-1]]) == 1 and node_types[chain[-1]] != "router":
            following = successors[chain[-1]][0][0]
            if starts_segment(following):
                break
            chain.append(following)
        segments.append(Segment(node.id, tuple(chain)))
        segment_of.update(dict.fromkeys(chain, node.id))
    orphans = [node.id for node in spec.nodes if node.id not in segment_of]
    if orphans:
        raise CompileError(
            f"nodes {', '.join(orphans)} form a cycle with no router; validate the spec first"
        )
    return Topology(
        tuple(segments),
        segment_of,
        dict(successors),
        {node_id: tuple(edges) for node_id, edges in incoming.items()},
    )

"""GraphState: what a run accumulates, with one reducer per field.

Parallel branches each return their own part; LangGraph applies the reducers, so branches that
finish in the same superstep merge without races and without losing writes.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from agentflow_grpc.compiler.attempts import NodeMetrics
from agentflow_grpc.compiler.replay import Replay
from agentflow_grpc.model.events import TokenUsage
from agentflow_grpc.nodes.base import SourceProvider
from agentflow_grpc.nodes.registry import NodeRegistry
from agentflow_grpc.nodes.response_cache import ScopedResponseCache


def merge_outputs(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Per-node outputs; a node that runs again (a loop) replaces its earlier output."""
    return {**current, **update}


def add_counts(current: dict[str, int], update: dict[str, int]) -> dict[str, int]:
    merged = dict(current)
    for key, count in update.items():
        merged[key] = merged.get(key, 0) + count
    return merged


class GraphState(TypedDict, total=False):
    inputs: dict[str, Any]  # the checked inputs, defaults applied; set once
    outputs: Annotated[dict[str, Any], merge_outputs]  # node id → latest output
    routes: Annotated[dict[str, str], merge_outputs]  # router id → route last taken
    visits: Annotated[dict[str, int], add_counts]  # node id → times run
    messages: Annotated[list[dict[str, Any]], operator.add]  # LLM conversations, by node
    errors: Annotated[list[dict[str, Any]], operator.add]  # failed attempts that were retried
    usage: Annotated[TokenUsage, operator.add]  # tokens, summed over the run


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every segment of one execution shares (LangGraph's run-scoped `context`)."""

    execution_id: str
    sources: SourceProvider
    registry: NodeRegistry
    default_node_timeout: float
    metrics: NodeMetrics  # each node attempt is recorded here
    response_cache: ScopedResponseCache | None = None  # None: no LLM replies are cached
    # A resumed run: the completions its log holds, handed back instead of run again.
    replay: Replay | None = None
    # A recorded run: waits until what the segment wrote to the stream (through the writer it
    # is given) is stored, so that no node runs before its predecessors' outputs are durable.
    checkpoint: Callable[[Callable[[Any], None]], Awaitable[None]] | None = None

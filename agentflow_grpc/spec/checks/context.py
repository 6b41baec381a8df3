"""What every check receives: the spec view, the graph facts and the validator's settings."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from agentflow_grpc.spec.codes import Violation
from agentflow_grpc.spec.graph import GraphFacts
from agentflow_grpc.spec.nodes import TemplateField
from agentflow_grpc.spec.plugins import PluginCatalog
from agentflow_grpc.spec.view import SpecView


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits that keep one spec from exhausting the server."""

    max_nodes: int = 2000
    max_edges: int = 5000
    max_prompt_chars: int = 100_000


@dataclass(frozen=True, slots=True)
class CheckContext:
    view: SpecView
    facts: GraphFacts
    input_ids: tuple[str, ...]
    sources: Mapping[str, str] | None  # source name -> source type; None: not checked
    plugins: PluginCatalog
    limits: Limits
    template_fields: Mapping[str, tuple[TemplateField, ...]]  # node id -> its templates


Check = Callable[[CheckContext], Iterator[Violation]]


def suggestion(name: str, candidates: Iterable[str]) -> str:
    """`; did you mean 'x'?` for a near miss, else an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def listing(names: Iterable[str]) -> str:
    """Names sorted and joined, or `none`."""
    return ", ".join(sorted(names)) or "none"


_SAID_WITH_AN = frozenset({"input", "image", "aggregator", "llm", "http", "unknown"})


def article(node_type: str | None) -> str:
    """`an input`, `an llm`, `a router`: node types as they are read aloud."""
    word = node_type or "unknown"
    return f"{'an' if word in _SAID_WITH_AN else 'a'} {word}"

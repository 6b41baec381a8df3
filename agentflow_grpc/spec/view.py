"""The validator's view of a spec: every part that could be read, even when others could not.

A fully valid document becomes a `WorkflowSpec`. A document with schema errors is read part by part,
so that one bad node never hides a broken edge or an unknown template variable elsewhere: the graph
checks still see every node whose `id` and `type` are readable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from agentflow_grpc.spec.models import Edge, InputParam, OutputSpec, Webhook, WorkflowSpec
from agentflow_grpc.spec.nodes import NODE_TYPES, AnyNode, Node, TemplateField

_NODE_ADAPTER: TypeAdapter[AnyNode] = TypeAdapter(Node)
_M = TypeVar("_M", Edge, InputParam, OutputSpec, Webhook)


@dataclass(frozen=True, slots=True)
class NodeEntry:
    index: int  # position in the document's `nodes` list
    id: str
    type: str | None  # None when the node's type is missing or unknown
    model: AnyNode | None  # None when the node itself has schema errors

    def template_fields(self) -> Iterator[TemplateField]:
        return self.model.template_fields() if self.model is not None else iter(())


@dataclass(frozen=True, slots=True)
class EdgeEntry:
    index: int
    edge: Edge


@dataclass(slots=True)
class SpecView:
    declared_inputs: frozenset[str]  # every input name, even of inputs with schema errors
    inputs: dict[str, InputParam]
    outputs: dict[str, OutputSpec]
    node_count: int
    nodes: list[NodeEntry]  # first node of each id, in document order
    duplicate_nodes: list[NodeEntry]
    edges: list[EdgeEntry]
    edge_count: int  # edges in the document, readable or not
    by_id: dict[str, NodeEntry] = field(init=False)
    webhook_source: str | None = None  # the source `webhook` names, when readable

    def __post_init__(self) -> None:
        self.by_id = {entry.id: entry for entry in self.nodes}

    @classmethod
    def of_spec(cls, spec: WorkflowSpec) -> SpecView:
        entries = [NodeEntry(i, n.id, n.type, n) for i, n in enumerate(spec.nodes)]
        view = cls._assemble(
            inputs=dict(spec.inputs),
            declared_inputs=frozenset(spec.inputs),
            outputs=dict(spec.outputs),
            entries=entries,
            node_count=len(spec.nodes),
            edges=[EdgeEntry(i, e) for i, e in enumerate(spec.edges)],
            edge_count=len(spec.edges),
        )
        view.webhook_source = spec.webhook.source if spec.webhook is not None else None
        return view

    @classmethod
    def of_partial_document(cls, document: Mapping[str, Any]) -> SpecView:
        """Read what can be read from a document that failed validation as a whole."""
        raw_inputs = _mapping(document.get("inputs"))
        raw_nodes = _sequence(document.get("nodes"))
        raw_edges = _sequence(document.get("edges"))
        entries: list[NodeEntry] = []
        for index, raw in enumerate(raw_nodes):
            entry = _node_entry(index, raw)
            if entry is not None:
                entries.append(entry)
        view = cls._assemble(
            inputs=_valid_items(raw_inputs, InputParam),
            declared_inputs=frozenset(k for k in raw_inputs if isinstance(k, str)),
            outputs=_valid_items(_mapping(document.get("outputs")), OutputSpec),
            entries=entries,
            node_count=len(raw_nodes),
            edges=[
                EdgeEntry(i, edge)
                for i, raw in enumerate(raw_edges)
                if (edge := _try(Edge, raw)) is not None
            ],
            edge_count=len(raw_edges),
        )
        webhook = _try(Webhook, document.get("webhook"))
        view.webhook_source = webhook.source if webhook is not None else None
        return view

    @classmethod
    def _assemble(
        cls,
        *,
        inputs: dict[str, InputParam],
        declared_inputs: frozenset[str],
        outputs: dict[str, OutputSpec],
        entries: list[NodeEntry],
        node_count: int,
        edges: list[EdgeEntry],
        edge_count: int,
    ) -> SpecView:
        first: dict[str, NodeEntry] = {}
        duplicates: list[NodeEntry] = []
        for entry in entries:
            if entry.id in first:
                duplicates.append(entry)
            else:
                first[entry.id] = entry
        return cls(
            declared_inputs=declared_inputs,
            inputs=inputs,
            outputs=outputs,
            node_count=node_count,
            nodes=list(first.values()),
            duplicate_nodes=duplicates,
            edges=edges,
            edge_count=edge_count,
        )


def _node_entry(index: int, raw: object) -> NodeEntry | None:
    if not isinstance(raw, dict):
        return None
    try:
        model = _NODE_ADAPTER.validate_python(raw)
    except ValidationError:
        node_id, node_type = raw.get("id"), raw.get("type")
        if not isinstance(node_id, str) or not node_id:
            return None
        known_type = node_type if node_type in NODE_TYPES else None
        return NodeEntry(index, node_id, known_type, None)
    return NodeEntry(index, model.id, model.type, model)


def _try(model: type[_M], raw: object) -> _M | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def _valid_items(raw: Mapping[Any, Any], model: type[_M]) -> dict[str, _M]:
    return {
        key: value
        for key, raw_value in raw.items()
        if isinstance(key, str) and (value := _try(model, raw_value)) is not None
    }


def _mapping(value: object) -> Mapping[Any, Any]:
    return value if isinstance(value, dict) else {}


def _sequence(value: object) -> list[Any]:
    return value if isinstance(value, list) else []

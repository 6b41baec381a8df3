"""Templates and expressions: syntax, and every reference resolved against inputs and the graph."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from agentflow_grpc.spec.checks.context import CheckContext, listing, suggestion
from agentflow_grpc.spec.codes import Violation, ViolationCode, pointer
from agentflow_grpc.spec.nodes import PluginNode, TemplateField, TemplateKind
from agentflow_grpc.spec.plugins import PluginCatalog
from agentflow_grpc.spec.templates import Reference, analyze
from agentflow_grpc.spec.view import NodeEntry

NODE_FIELDS = frozenset({"output"})
"""What `nodes.<id>.` exposes to templates."""


def node_template_fields(plugins: PluginCatalog, entry: NodeEntry) -> tuple[TemplateField, ...]:
    """The node's own template fields, plus those its plugin declares."""
    fields = tuple(entry.template_fields())
    if isinstance(entry.model, PluginNode):
        plugin = plugins.get(entry.model.plugin)
        if plugin is not None:
            keys = frozenset(plugin.template_keys)
            fields += tuple(entry.model.plugin_template_fields(keys))
    return fields


def check_node_templates(ctx: CheckContext) -> Iterator[Violation]:
    for entry in ctx.view.nodes:
        for field in ctx.template_fields[entry.id]:
            location = ("nodes", entry.index, *field.location)
            yield from _check_text(ctx, location, field.text, field.kind, reader=entry.id)


def check_output_expressions(ctx: CheckContext) -> Iterator[Violation]:
    for name, output in ctx.view.outputs.items():
        location = ("outputs", name, "from")
        yield from _check_text(ctx, location, output.from_, "expression", reader=None)


def output_node_ids(ctx_outputs: Iterable[str]) -> set[str]:
    """Node ids that output expressions read (for the 'path to an output' check)."""
    ids: set[str] = set()
    for expression in ctx_outputs:
        for reference in analyze(expression, "expression").references:
            if reference.root == "nodes" and reference.path:
                ids.add(reference.path[0])
    return ids


def _check_text(
    ctx: CheckContext,
    location: tuple[str | int, ...],
    text: str,
    kind: TemplateKind,
    *,
    reader: str | None,
) -> Iterator[Violation]:
    analysis = analyze(text, kind)
    for problem in analysis.problems:
        yield Violation(pointer(*location), problem.code, problem.message)
    for reference in analysis.references:
        for code, message in _reference_problems(ctx, reference, reader):
            yield Violation(pointer(*location), code, message)


def _reference_problems(
    ctx: CheckContext, reference: Reference, reader: str | None
) -> Iterator[tuple[ViolationCode, str]]:
    if reference.root == "inputs":
        if reference.path and reference.path[0] not in ctx.view.declared_inputs:
            name = reference.path[0]
            yield (
                ViolationCode.TEMPLATE_UNKNOWN_INPUT,
                f"'inputs.{name}' is not a declared input (declared: "
                f"{listing(ctx.view.declared_inputs)}){suggestion(name, ctx.view.declared_inputs)}",
            )
        return
    if not reference.path:
        yield (
            ViolationCode.TEMPLATE_DYNAMIC_REFERENCE,
            "nodes must be named statically, as `nodes.<id>.output`, so the graph can be checked",
        )
        return
    node_id = reference.path[0]
    if node_id not in ctx.view.by_id:
        yield (
            ViolationCode.TEMPLATE_UNKNOWN_NODE,
            f"'nodes.{node_id}' names no node{suggestion(node_id, ctx.view.by_id)}",
        )
        return
    if len(reference.path) > 1 and reference.path[1] not in NODE_FIELDS:
        yield (
            ViolationCode.TEMPLATE_UNKNOWN_NODE_FIELD,
            f"'nodes.{node_id}.{reference.path[1]}' is not available; use 'nodes.{node_id}.output'",
        )
    if reader is not None and not ctx.facts.is_upstream(node_id, reader):
        yield (
            ViolationCode.TEMPLATE_NODE_NOT_UPSTREAM,
            f"node '{reader}' reads 'nodes.{node_id}', which is not upstream of it, so its "
            f"output cannot exist yet; add a path {node_id} -> … -> {reader}",
        )

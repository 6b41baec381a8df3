"""The validation engine: every violation of a spec document, each with its path and code.

Steps: the pydantic models check the shape; the document is then read part by part (`SpecView`) so
that every later check runs even when some parts are broken; graph facts are computed once; each
check in `CHECKS` reports what it finds. No check stops another. The checks in `WARNINGS` report
what is legal but probably unintended: warnings never make a spec invalid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agentflow_grpc.spec.checks import (
    joins,
    limits,
    node_configs,
    parallel_joins,
    references,
    structure,
    templates,
)
from agentflow_grpc.spec.checks.context import Check, CheckContext, Limits
from agentflow_grpc.spec.checks.schema import schema_violations
from agentflow_grpc.spec.codes import Violation, ViolationCode, pointer_sort_key
from agentflow_grpc.spec.graph import analyze_graph
from agentflow_grpc.spec.models import WorkflowSpec
from agentflow_grpc.spec.nodes import RouterNode
from agentflow_grpc.spec.plugins import PluginCatalog
from agentflow_grpc.spec.view import SpecView

CHECKS: tuple[Check, ...] = (
    structure.check_node_ids,
    structure.check_edges,
    structure.check_input_node,
    structure.check_reachability,
    structure.check_cycles,
    structure.check_routers,
    structure.check_aggregators,
    joins.check_aggregator_loops,
    templates.check_node_templates,
    templates.check_output_expressions,
    node_configs.check_inputs,
    node_configs.check_sql,
    node_configs.check_llm_output_schemas,
    node_configs.check_http_nodes,
    node_configs.check_aggregators_sources,
    references.check_sources,
    references.check_webhook,
    references.check_plugins,
    limits.check_limits,
)


WARNINGS: tuple[Check, ...] = (
    parallel_joins.check_parallel_joins,
    references.check_ignored_parameters,
)


@dataclass(frozen=True, slots=True)
class ValidationResult:
    violations: tuple[Violation, ...]
    spec: WorkflowSpec | None  # set when the document has no violations at all
    warnings: tuple[Violation, ...] = ()  # never make the spec invalid

    @property
    def ok(self) -> bool:
        return not self.violations


def validate_spec(
    document: Any,
    *,
    sources: Mapping[str, str] | None = None,
    plugins: PluginCatalog | None = None,
    limits: Limits | None = None,
) -> ValidationResult:
    """Validate a parsed JSON document. Never raises for any JSON value.

    `sources` maps the names of the tenant's sources to their types; when given, references to
    other sources are violations. `plugins` lists the custom node types that may be used (none
    when not given); `limits` defaults to `Limits()`.
    """
    try:
        return _validate(
            document,
            sources=sources,
            plugins=plugins if plugins is not None else PluginCatalog(),
            limits=limits if limits is not None else Limits(),
        )
    except RecursionError:
        # Checks guard their own recursion; this is the net for a document no check foresaw.
        message = "the document is nested too deeply to validate"
        return ValidationResult((Violation("", ViolationCode.SCHEMA_INVALID, message),), None)


def _validate(
    document: Any,
    *,
    sources: Mapping[str, str] | None,
    plugins: PluginCatalog,
    limits: Limits,
) -> ValidationResult:
    if not isinstance(document, dict):
        kind = type(document).__name__
        return ValidationResult(
            (
                Violation(
                    "", ViolationCode.SCHEMA_WRONG_TYPE, f"a spec is a JSON object, not {kind}"
                ),
            ),
            None,
        )
    violations: list[Violation] = []
    spec: WorkflowSpec | None = None
    try:
        spec = WorkflowSpec.model_validate(document)
    except ValidationError as exc:
        violations.extend(schema_violations(exc, document))
        view = SpecView.of_partial_document(document)
    else:
        view = SpecView.of_spec(spec)

    context = _context(view, sources=sources, plugins=plugins, limits=limits)
    for check in CHECKS:
        violations.extend(check(context))
    unique = list(dict.fromkeys(violations))
    unique.sort(key=lambda v: pointer_sort_key(v.path))
    warnings = [warning for check in WARNINGS for warning in check(context)]
    warnings.sort(key=lambda v: pointer_sort_key(v.path))
    return ValidationResult(tuple(unique), spec if not unique else None, tuple(warnings))


def _context(
    view: SpecView,
    *,
    sources: Mapping[str, str] | None,
    plugins: PluginCatalog,
    limits: Limits,
) -> CheckContext:
    input_ids = tuple(entry.id for entry in view.nodes if entry.type == "input")
    facts = analyze_graph(
        (entry.id for entry in view.nodes),
        (
            (item.edge.from_, item.edge.to)
            for item in view.edges
            if item.edge.from_ in view.by_id and item.edge.to in view.by_id
        ),
        input_id=input_ids[0] if input_ids else None,
        output_node_ids=templates.output_node_ids(o.from_ for o in view.outputs.values()),
        bounded_routers=(
            entry.id
            for entry in view.nodes
            if isinstance(entry.model, RouterNode) and entry.model.config.max_iterations
        ),
    )
    return CheckContext(
        view=view,
        facts=facts,
        input_ids=input_ids,
        sources=sources,
        plugins=plugins,
        limits=limits,
        template_fields={
            entry.id: templates.node_template_fields(plugins, entry) for entry in view.nodes
        },
    )

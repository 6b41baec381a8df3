"""Stable machine codes for spec violations and warnings, and the record of either.

A code, once published, never changes meaning: clients branch on it. New checks get new codes.
A violation makes a spec invalid; a warning (`WarningCode`) never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ViolationCode(StrEnum):
    # Shape of the document (from the pydantic models).
    SCHEMA_WRONG_TYPE = "schema.wrong_type"
    SCHEMA_REQUIRED = "schema.required"
    SCHEMA_UNKNOWN_FIELD = "schema.unknown_field"
    SCHEMA_INVALID_CHOICE = "schema.invalid_choice"
    SCHEMA_PATTERN = "schema.pattern"
    SCHEMA_OUT_OF_RANGE = "schema.out_of_range"
    SCHEMA_INVALID_VALUE = "schema.invalid_value"
    SCHEMA_INVALID = "schema.invalid"
    NODE_UNKNOWN_TYPE = "node.unknown_type"
    # Identity and wiring.
    NODE_DUPLICATE_ID = "node.duplicate_id"
    EDGE_UNKNOWN_NODE = "edge.unknown_node"
    EDGE_DUPLICATE = "edge.duplicate"
    EDGE_ROUTE_ON_NON_ROUTER = "edge.route_on_non_router"
    # Graph shape.
    GRAPH_MISSING_INPUT = "graph.missing_input"
    GRAPH_MULTIPLE_INPUTS = "graph.multiple_inputs"
    GRAPH_INPUT_HAS_INCOMING = "graph.input_has_incoming"
    GRAPH_UNREACHABLE = "graph.unreachable"
    GRAPH_NO_PATH_TO_OUTPUT = "graph.no_path_to_output"
    GRAPH_UNBOUNDED_CYCLE = "graph.unbounded_cycle"
    # Routers and aggregators.
    ROUTER_DUPLICATE_ROUTE = "router.duplicate_route"
    ROUTER_ROUTE_WITHOUT_EDGE = "router.route_without_edge"
    ROUTER_EDGE_WITHOUT_ROUTE = "router.edge_without_route"
    AGGREGATOR_TOO_FEW_BRANCHES = "aggregator.too_few_branches"
    AGGREGATOR_MISSING_SOURCE = "aggregator.missing_source"
    AGGREGATOR_LOOP_MISMATCH = "aggregator.loop_mismatch"
    # Templates and expressions.
    TEMPLATE_SYNTAX_ERROR = "template.syntax_error"
    TEMPLATE_UNKNOWN_VARIABLE = "template.unknown_variable"
    TEMPLATE_UNKNOWN_INPUT = "template.unknown_input"
    TEMPLATE_UNKNOWN_NODE = "template.unknown_node"
    TEMPLATE_NODE_NOT_UPSTREAM = "template.node_not_upstream"
    TEMPLATE_UNKNOWN_NODE_FIELD = "template.unknown_node_field"
    TEMPLATE_DYNAMIC_REFERENCE = "template.dynamic_reference"
    TEMPLATE_UNKNOWN_FILTER = "template.unknown_filter"
    TEMPLATE_UNSAFE_ATTRIBUTE = "template.unsafe_attribute"
    # SQL.
    SQL_TEMPLATED = "sql.templated"
    SQL_MULTIPLE_STATEMENTS = "sql.multiple_statements"
    SQL_UNSUPPORTED_PLACEHOLDER = "sql.unsupported_placeholder"
    SQL_PARAMETER_MISMATCH = "sql.parameter_mismatch"
    SQL_WRITE_IN_READ_ONLY = "sql.write_in_read_only"
    # Per node type.
    INPUT_INVALID_DEFAULT = "input.invalid_default"
    INPUT_INVALID_ENUM = "input.invalid_enum"
    LLM_INVALID_OUTPUT_SCHEMA = "llm.invalid_output_schema"
    HTTP_INVALID_JSON_PATH = "http.invalid_json_path"
    HTTP_URL_WITHOUT_BASE = "http.url_without_base"
    # References to things outside the spec.
    SOURCE_UNKNOWN = "source.unknown"
    SOURCE_INCOMPATIBLE = "source.incompatible"
    PLUGIN_UNKNOWN_TYPE = "plugin.unknown_type"
    PLUGIN_INVALID_CONFIG = "plugin.invalid_config"
    # Limits.
    LIMIT_TOO_MANY_NODES = "limit.too_many_nodes"
    LIMIT_TOO_MANY_EDGES = "limit.too_many_edges"
    LIMIT_PROMPT_TOO_LARGE = "limit.prompt_too_large"


class WarningCode(StrEnum):
    """Legal but probably unintended: reported beside the violations, never making a spec
    invalid."""

    GRAPH_PARALLEL_JOIN = "graph.parallel_join"
    SOURCE_PARAMETER_IGNORED = "source.parameter_ignored"


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem in a spec: where (an RFC 6901 JSON Pointer), what (a code), how to fix it.
    Warnings have the same shape, with a `WarningCode`."""

    path: str
    code: ViolationCode | WarningCode
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code.value, "message": self.message}


def pointer(*parts: str | int) -> str:
    """Build an RFC 6901 JSON Pointer from path segments, escaping '~' and '/'."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def pointer_sort_key(path: str) -> tuple[tuple[int, int | str], ...]:
    """Order pointers the way a reader walks the document: /nodes/2 before /nodes/10."""
    return tuple(
        (0, int(seg)) if seg.isascii() and seg.isdigit() else (1, seg)
        for seg in path.split("/")[1:]
    )

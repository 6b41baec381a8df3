"""Pydantic's validation errors, as violations with JSON Pointer paths and stable codes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from agentflow_grpc.spec.codes import Violation, ViolationCode, pointer
from agentflow_grpc.spec.nodes import NODE_TYPES

_CODES: dict[str, ViolationCode] = {
    "missing": ViolationCode.SCHEMA_REQUIRED,
    "extra_forbidden": ViolationCode.SCHEMA_UNKNOWN_FIELD,
    "union_tag_invalid": ViolationCode.NODE_UNKNOWN_TYPE,
    "union_tag_not_found": ViolationCode.SCHEMA_REQUIRED,
    "literal_error": ViolationCode.SCHEMA_INVALID_CHOICE,
    "enum": ViolationCode.SCHEMA_INVALID_CHOICE,
    "string_pattern_mismatch": ViolationCode.SCHEMA_PATTERN,
    "value_error": ViolationCode.SCHEMA_INVALID_VALUE,
    "assertion_error": ViolationCode.SCHEMA_INVALID_VALUE,
}
_TAG_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})
_KEY_MARKER = "[key]"
_RANGE_ERRORS = frozenset(
    {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "too_short",
        "too_long",
        "string_too_short",
        "string_too_long",
        "finite_number",
        "multiple_of",
    }
)


def schema_violations(error: ValidationError, document: Any) -> Iterator[Violation]:
    for detail in error.errors(include_url=False):
        path = _document_path(detail["loc"], document)
        if detail["type"] in _TAG_ERRORS:
            path.append("type")
        yield Violation(pointer(*path), _code(detail["type"]), _message(detail, path))


def _code(error_type: str) -> ViolationCode:
    if error_type in _CODES:
        return _CODES[error_type]
    if error_type in _RANGE_ERRORS:
        return ViolationCode.SCHEMA_OUT_OF_RANGE
    if error_type.endswith(("_type", "_parsing")) or error_type == "model_attributes_type":
        return ViolationCode.SCHEMA_WRONG_TYPE
    return ViolationCode.SCHEMA_INVALID


def _document_path(loc: Sequence[str | int], document: Any) -> list[str | int]:
    """Follow pydantic's `loc` through the document, dropping what is not in it: the node type
    that the discriminated union inserts (`nodes, 3, "llm", config`), `[key]` markers, and union
    member names."""
    segments = list(loc)
    if len(segments) >= 3 and segments[0] == "nodes" and segments[2] in NODE_TYPES:
        node = _item(document, "nodes", segments[1])
        if isinstance(node, dict) and node.get("type") == segments[2]:
            del segments[2]
    path: list[str | int] = []
    current: Any = document
    for position, segment in enumerate(segments):
        if segment == _KEY_MARKER:
            continue
        is_last = position == len(segments) - 1
        present = (isinstance(current, dict) and segment in current) or (
            isinstance(current, list) and isinstance(segment, int) and 0 <= segment < len(current)
        )
        if present:
            current = current[segment]
            path.append(segment)
        elif is_last and isinstance(current, dict) and isinstance(segment, str):
            path.append(segment)  # a missing field: the pointer names where it belongs
    return path


def _item(document: Any, key: str, index: str | int) -> Any:
    items = document.get(key) if isinstance(document, dict) else None
    if isinstance(items, list) and isinstance(index, int) and 0 <= index < len(items):
        return items[index]
    return None


def _message(detail: ErrorDetails, path: list[str | int]) -> str:
    error_type = detail["type"]
    if not path:
        field = "document"
    elif isinstance(path[-1], int):
        field = f"{path[-2]}[{path[-1]}]" if len(path) > 1 else f"item {path[-1]}"
    else:
        field = str(path[-1])
    if error_type == "missing":
        return f"required field '{field}' is missing"
    if error_type == "extra_forbidden":
        return f"unknown field '{field}'; remove it or check its spelling"
    if error_type == "union_tag_invalid":
        context = detail.get("ctx") or {}
        return (
            f"unknown node type {context.get('tag')!r}; expected one of "
            f"{context.get('expected_tags')} (custom types use type 'plugin')"
        )
    if error_type == "union_tag_not_found":
        return "required field 'type' is missing; every node needs a type"
    message = detail["msg"]
    if detail["loc"] and detail["loc"][-1] == _KEY_MARKER:
        return f"name '{field}' is not allowed: {message}"
    if error_type == "value_error":
        message = message.removeprefix("Value error, ")
    return f"{field}: {message}"

"""Properties of the validator over randomly mutated specs: it never raises; its answers hold."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentflow_grpc.spec import ViolationCode, WorkflowSpec, validate_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.json"))
DOCUMENTS = [json.loads(path.read_text()) for path in EXAMPLES]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Strings a spec cares about: ids, template fragments, SQL, JSONPath, type names.
interesting_text = st.sampled_from(
    [
        "input", "llm", "router", "aggregator", "http", "database", "image", "plugin",
        "ticket", "classify", "route", "default", "{{ inputs.body }}", "{{ nodes.x.output }}",
        "{% if %}", "{{ nodes[inputs.k] }}", "select $1", "select 1; select 2", "$.a[",
        "nodes.classify.output.category == 'billing'", "", "__class__", "agentflow/v2",
    ]
)  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(_paths(child, (*prefix, index)))
    return found


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        document = document[key]
    return document


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    document = copy.deepcopy(draw(st.sampled_from(DOCUMENTS)))
    for _ in range(draw(st.integers(1, 5))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(document, path), path[-1]
        operation = draw(st.sampled_from(["delete", "replace", "text", "duplicate", "swap", "add"]))
        if operation == "delete":
            del parent[key]
        elif operation == "replace":
            parent[key] = draw(json_values)
        elif operation == "text":
            parent[key] = draw(interesting_text)
        elif operation == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif operation == "swap":
            other = draw(st.sampled_from(paths))
            if other[: len(path)] != path and path[: len(other)] != other:
                other_parent = _parent(document, other)
                parent[key], other_parent[other[-1]] = other_parent[other[-1]], parent[key]
        elif operation == "add" and isinstance(parent[key], dict):
            parent[key][draw(st.text(max_size=8) | interesting_text)] = draw(json_values)
    return document


def test_there_are_documents_to_mutate() -> None:
    assert len(DOCUMENTS) >= 8


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_specs_validate_or_return_violations_never_raise(document: Any) -> None:
    result = validate_spec(document)

    assert result.ok == (result.spec is not None)
    for violation in result.violations:
        assert isinstance(violation.code, ViolationCode)
        assert violation.path == "" or violation.path.startswith("/")
        assert violation.message
    # Deterministic: the same document gives the same answer.
    assert validate_spec(copy.deepcopy(document)).violations == result.violations
    if result.spec is not None:
        # A valid spec survives model -> JSON -> model unchanged.
        document_again = json.loads(json.dumps(result.spec.to_document()))
        assert WorkflowSpec.model_validate(document_again) == result.spec
        assert validate_spec(document_again).ok


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_any_json_value_is_answered_with_violations(document: Any) -> None:
    result = validate_spec(document)
    assert not result.ok
    assert result.violations

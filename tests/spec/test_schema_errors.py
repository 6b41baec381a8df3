"""validate_spec on documents the pydantic models reject: JSON Pointer paths and codes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from spec_documents import spec_with_node

from agentflow_grpc.spec.codes import ViolationCode
from agentflow_grpc.spec.validator import ValidationResult, validate_spec

VALID: dict[str, Any] = spec_with_node(
    {
        "id": "write",
        "type": "llm",
        "source": "openai-main",
        "config": {"prompt": "Write about {{ inputs.topic }}"},
    },
    inputs={"topic": {"type": "string"}},
    name="schema-errors",
)


def document(**changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(VALID)
    result.update(copy.deepcopy(changes))
    return result


def with_node(node: dict[str, Any]) -> dict[str, Any]:
    """The valid document with /nodes/1 replaced."""
    result = document()
    result["nodes"][1] = node
    return result


def found(result: ValidationResult) -> list[tuple[str, ViolationCode]]:
    return [(violation.path, violation.code) for violation in result.violations]


def test_valid_document_has_no_violations() -> None:
    result = validate_spec(document())

    assert result.violations == ()
    assert result.spec is not None


# --- pointers and codes ---


def test_missing_field_in_node_config_strips_the_discriminator_tag() -> None:
    node = {"id": "write", "type": "image", "source": "openai-main", "config": {}}

    result = validate_spec(with_node(node))

    assert found(result) == [("/nodes/1/config/prompt", ViolationCode.SCHEMA_REQUIRED)]
    assert "'prompt'" in result.violations[0].message
    assert result.spec is None


def test_missing_field_of_an_llm_node() -> None:
    node = {"id": "write", "type": "llm", "config": {"prompt": "x"}}

    result = validate_spec(with_node(node))

    assert found(result) == [("/nodes/1/source", ViolationCode.SCHEMA_REQUIRED)]


def test_llm_config_without_prompt_or_messages_points_at_the_config() -> None:
    node = {"id": "write", "type": "llm", "source": "s", "config": {}}

    result = validate_spec(with_node(node))

    assert found(result) == [("/nodes/1/config", ViolationCode.SCHEMA_INVALID_VALUE)]
    assert "`prompt` or `messages`" in result.violations[0].message
    assert "Value error" not in result.violations[0].message


def test_unknown_field_in_node_config() -> None:
    node = {"id": "write", "type": "llm", "source": "s", "config": {"prompt": "x", "bogus": 1}}

    result = validate_spec(with_node(node))

    assert found(result) == [("/nodes/1/config/bogus", ViolationCode.SCHEMA_UNKNOWN_FIELD)]
    assert "'bogus'" in result.violations[0].message


def test_unknown_top_level_field() -> None:
    result = validate_spec(document(bogus=True))

    assert found(result) == [("/bogus", ViolationCode.SCHEMA_UNKNOWN_FIELD)]


def test_missing_top_level_field() -> None:
    doc = document()
    del doc["name"]

    result = validate_spec(doc)

    assert found(result) == [("/name", ViolationCode.SCHEMA_REQUIRED)]


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"prompt": "x", "temperature": "hot"}, "/nodes/1/config/temperature"),
        ({"prompt": 5}, "/nodes/1/config/prompt"),
        ({"prompt": "x", "stream": "yes"}, "/nodes/1/config/stream"),
        ({"prompt": "x", "max_tokens": 1.5}, "/nodes/1/config/max_tokens"),
    ],
)
def test_wrong_type_in_node_config(config: dict[str, Any], path: str) -> None:
    node = {"id": "write", "type": "llm", "source": "s", "config": config}

    result = validate_spec(with_node(node))

    assert found(result) == [(path, ViolationCode.SCHEMA_WRONG_TYPE)]


def test_wrong_type_of_a_whole_node() -> None:
    doc = document()
    doc["nodes"].append("not a node")

    result = validate_spec(doc)

    assert ("/nodes/2", ViolationCode.SCHEMA_WRONG_TYPE) in found(result)


def test_errors_inside_lists_of_a_node() -> None:
    config = {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]}
    node = {"id": "write", "type": "llm", "source": "s", "config": config}

    result = validate_spec(with_node(node))

    assert found(result) == [
        ("/nodes/1/config/messages/1/role", ViolationCode.SCHEMA_INVALID_CHOICE)
    ]


def test_out_of_range_value() -> None:
    node = {"id": "write", "type": "llm", "source": "s", "config": {"prompt": "x"}, "timeout": 0}

    result = validate_spec(with_node(node))

    assert found(result) == [("/nodes/1/timeout", ViolationCode.SCHEMA_OUT_OF_RANGE)]


def test_unknown_node_type_points_at_its_type_field() -> None:
    node = {"id": "write", "type": "wizard", "config": {"prompt": "x"}}

    result = validate_spec(with_node(node))

    assert len(result.violations) == 1
    violation = result.violations[0]
    assert violation.code == ViolationCode.NODE_UNKNOWN_TYPE
    assert violation.path == "/nodes/1/type"
    assert "'wizard'" in violation.message
    assert "'llm'" in violation.message


def test_node_without_type() -> None:
    node = {"id": "write", "config": {"prompt": "x"}}

    result = validate_spec(with_node(node))

    assert len(result.violations) == 1
    violation = result.violations[0]
    assert violation.code == ViolationCode.SCHEMA_REQUIRED
    assert violation.path == "/nodes/1/type"
    assert "'type'" in violation.message


@pytest.mark.parametrize(
    ("value", "kind"), [([], "list"), (None, "NoneType"), ("spec", "str"), (3, "int")]
)
def test_non_object_document(value: Any, kind: str) -> None:
    result = validate_spec(value)

    assert found(result) == [("", ViolationCode.SCHEMA_WRONG_TYPE)]
    assert kind in result.violations[0].message
    assert result.spec is None


# --- RFC 6901 escaping ---


def test_unknown_field_with_slash_and_tilde_is_escaped() -> None:
    node = {"id": "write", "type": "llm", "source": "s", "config": {"prompt": "x", "a/b~c": 1}}

    result = validate_spec(with_node(node))

    assert found(result) == [("/nodes/1/config/a~1b~0c", ViolationCode.SCHEMA_UNKNOWN_FIELD)]
    assert "'a/b~c'" in result.violations[0].message


def test_http_header_name_with_slash_is_escaped() -> None:
    node = {"id": "write", "type": "http", "config": {"url": "https://x", "headers": {"a/b": 5}}}

    result = validate_spec(with_node(node))

    assert ("/nodes/1/config/headers/a~1b", ViolationCode.SCHEMA_WRONG_TYPE) in found(result)


@pytest.mark.parametrize(("name", "path"), [("a/b", "/inputs/a~1b"), ("c~d", "/inputs/c~0d")])
def test_invalid_input_name_is_escaped(name: str, path: str) -> None:
    inputs = {"topic": {"type": "string"}, name: {"type": "string"}}

    result = validate_spec(document(inputs=inputs))

    assert found(result) == [(path, ViolationCode.SCHEMA_PATTERN)]
    # The key marker pydantic adds (`[key]`) is not part of the document.
    assert "[key]" not in result.violations[0].message


def test_invalid_nested_property_name_is_escaped() -> None:
    inputs = {"topic": {"type": "object", "properties": {"x/y": {"type": "string"}}}}

    result = validate_spec(document(inputs=inputs))

    assert found(result) == [("/inputs/topic/properties/x~1y", ViolationCode.SCHEMA_PATTERN)]


def test_invalid_input_name_with_non_object_value() -> None:
    result = validate_spec(document(inputs={"topic": {"type": "string"}, "a/b": "string"}))

    assert set(found(result)) == {
        ("/inputs/a~1b", ViolationCode.SCHEMA_PATTERN),
        ("/inputs/a~1b", ViolationCode.SCHEMA_WRONG_TYPE),
    }


def test_discriminator_tag_is_stripped_even_when_the_node_has_a_key_of_that_name() -> None:
    # pydantic's loc is ("nodes", 1, "image", "config", "prompt"); the node's own (unknown)
    # "image" key must not be mistaken for that tag.
    node = {"id": "write", "type": "image", "source": "s", "config": {}, "image": {"config": {}}}

    result = validate_spec(with_node(node))

    assert set(found(result)) == {
        ("/nodes/1/config/prompt", ViolationCode.SCHEMA_REQUIRED),
        ("/nodes/1/image", ViolationCode.SCHEMA_UNKNOWN_FIELD),
    }


@pytest.mark.parametrize(
    ("changes", "path", "code"),
    [
        ({"config": 5}, "/nodes/1/config", ViolationCode.SCHEMA_WRONG_TYPE),
        ({"bogus": 1}, "/nodes/1/bogus", ViolationCode.SCHEMA_UNKNOWN_FIELD),
        ({"timeout": -1}, "/nodes/1/timeout", ViolationCode.SCHEMA_OUT_OF_RANGE),
        ({"plugin": "Bad Name"}, "/nodes/1/plugin", ViolationCode.SCHEMA_PATTERN),
    ],
)
def test_plugin_node_errors_point_at_their_field(
    changes: dict[str, Any], path: str, code: ViolationCode
) -> None:
    # A plugin node's discriminator tag "plugin" is also the name of one of its fields.
    node = {"id": "write", "type": "plugin", "plugin": "acme.writer", **changes}

    result = validate_spec(with_node(node))

    assert found(result) == [(path, code)]


def test_plugin_node_unknown_field_names_that_field() -> None:
    node = {"id": "write", "type": "plugin", "plugin": "acme.writer", "bogus": 1}

    result = validate_spec(with_node(node))

    assert "'bogus'" in result.violations[0].message


# --- a broken node hides nothing else ---


def test_broken_node_does_not_hide_edge_errors() -> None:
    doc = with_node({"id": "write", "type": "llm", "source": "s", "config": {"bogus": 1}})
    doc["edges"].append({"from": "write", "to": "ghost"})

    result = validate_spec(doc)

    assert ("/edges/1/to", ViolationCode.EDGE_UNKNOWN_NODE) in found(result)
    assert ("/nodes/1/config/bogus", ViolationCode.SCHEMA_UNKNOWN_FIELD) in found(result)


def test_broken_node_id_still_counts_for_edges() -> None:
    doc = with_node({"id": "write", "type": "llm", "config": {"prompt": "x"}})

    result = validate_spec(doc)

    assert found(result) == [("/nodes/1/source", ViolationCode.SCHEMA_REQUIRED)]


def test_node_of_unknown_type_still_counts_for_edges() -> None:
    doc = with_node({"id": "write", "type": "wizard"})

    result = validate_spec(doc)

    assert [code for _, code in found(result)] == [ViolationCode.NODE_UNKNOWN_TYPE]


def test_broken_node_does_not_hide_template_errors_elsewhere() -> None:
    doc = document()
    doc["nodes"].append({"id": "broken", "type": "llm", "config": {}})
    doc["edges"].append({"from": "write", "to": "broken"})
    doc["nodes"][1]["config"]["prompt"] = "{{ inputs.nope }}"

    result = validate_spec(doc)

    assert ("/nodes/1/config/prompt", ViolationCode.TEMPLATE_UNKNOWN_INPUT) in found(result)
    assert ("/nodes/2/source", ViolationCode.SCHEMA_REQUIRED) in found(result)


def test_violations_are_sorted_by_document_position() -> None:
    doc = document()
    doc["nodes"] = [{"id": "start", "type": "input"}] + [
        {"id": f"n{i}", "type": "llm", "source": "s", "config": {"prompt": "x", "bad": i}}
        for i in range(12)
    ]
    doc["edges"] = [{"from": "start", "to": f"n{i}"} for i in range(12)]
    doc["outputs"] = {"text": {"from": "nodes.n0.output.text"}}

    result = validate_spec(doc)

    unknown = [path for path, code in found(result) if code == ViolationCode.SCHEMA_UNKNOWN_FIELD]
    assert unknown == [f"/nodes/{i}/config/bad" for i in range(1, 13)]

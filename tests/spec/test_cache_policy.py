"""`cache: {ttl}` on llm nodes and `summarize` aggregators: what validates, and where bad values
are reported (JSON Pointer and code)."""

from __future__ import annotations

from typing import Any

import pytest
from spec_documents import spec_with_node

from agentflow_grpc.spec import LlmNode, ViolationCode, validate_spec, workflow_json_schema
from agentflow_grpc.spec.base import MAX_CACHE_TTL


def llm_with_cache(cache: Any) -> dict[str, Any]:
    return spec_with_node(
        {
            "id": "ask",
            "type": "llm",
            "source": "openai-main",
            "config": {"prompt": "Hi {{ inputs.name }}", "cache": cache},
        },
        inputs={"name": {"type": "string"}},
        name="cache-policy",
    )


def aggregator_with(strategy: str, cache: Any) -> dict[str, Any]:
    return {
        "api_version": "agentflow/v1",
        "name": "cache-policy",
        "outputs": {"result": {"from": "nodes.merge.output"}},
        "nodes": [
            {"id": "start", "type": "input"},
            {"id": "a", "type": "llm", "source": "openai-main", "config": {"prompt": "a"}},
            {"id": "b", "type": "llm", "source": "openai-main", "config": {"prompt": "b"}},
            {
                "id": "merge",
                "type": "aggregator",
                "source": "openai-main",
                "config": {"strategy": strategy, "cache": cache},
            },
        ],
        "edges": [
            {"from": "start", "to": "a"},
            {"from": "start", "to": "b"},
            {"from": "a", "to": "merge"},
            {"from": "b", "to": "merge"},
        ],
    }


@pytest.mark.parametrize("ttl", [1, 0.25, 3600, MAX_CACHE_TTL])
def test_a_positive_ttl_up_to_30_days_is_valid(ttl: float) -> None:
    result = validate_spec(llm_with_cache({"ttl": ttl}))

    assert result.violations == ()
    assert result.spec is not None
    node = result.spec.nodes[1]
    assert isinstance(node, LlmNode)
    assert node.config.cache is not None
    assert node.config.cache.ttl == ttl


def test_without_cache_an_llm_node_has_none() -> None:
    document = llm_with_cache(None)
    del document["nodes"][1]["config"]["cache"]

    result = validate_spec(document)

    assert result.spec is not None
    node = result.spec.nodes[1]
    assert isinstance(node, LlmNode)
    assert node.config.cache is None


@pytest.mark.parametrize(
    ("cache", "path", "code"),
    [
        ({"ttl": 0}, "/nodes/1/config/cache/ttl", ViolationCode.SCHEMA_OUT_OF_RANGE),
        ({"ttl": -5}, "/nodes/1/config/cache/ttl", ViolationCode.SCHEMA_OUT_OF_RANGE),
        (
            {"ttl": MAX_CACHE_TTL + 1},
            "/nodes/1/config/cache/ttl",
            ViolationCode.SCHEMA_OUT_OF_RANGE,
        ),
        ({"ttl": "60"}, "/nodes/1/config/cache/ttl", ViolationCode.SCHEMA_WRONG_TYPE),
        ({"ttl": True}, "/nodes/1/config/cache/ttl", ViolationCode.SCHEMA_WRONG_TYPE),
        ({}, "/nodes/1/config/cache/ttl", ViolationCode.SCHEMA_REQUIRED),
        ({"ttl": 60, "size": 3}, "/nodes/1/config/cache/size", ViolationCode.SCHEMA_UNKNOWN_FIELD),
        (True, "/nodes/1/config/cache", ViolationCode.SCHEMA_WRONG_TYPE),
        (60, "/nodes/1/config/cache", ViolationCode.SCHEMA_WRONG_TYPE),
    ],
)
def test_bad_cache_values_are_reported_at_their_path(
    cache: Any, path: str, code: ViolationCode
) -> None:
    result = validate_spec(llm_with_cache(cache))

    assert [(v.path, v.code) for v in result.violations] == [(path, code)]
    assert result.spec is None


def test_a_summarize_aggregator_may_cache() -> None:
    result = validate_spec(aggregator_with("summarize", {"ttl": 60}))

    assert result.violations == ()


def test_other_aggregator_strategies_may_not_cache() -> None:
    result = validate_spec(aggregator_with("text", {"ttl": 60}))

    assert [(v.path, v.code) for v in result.violations] == [
        ("/nodes/3/config", ViolationCode.SCHEMA_INVALID_VALUE)
    ]
    assert "summarize" in result.violations[0].message


def test_the_json_schema_describes_the_cache() -> None:
    schema = workflow_json_schema()
    policy = schema["$defs"]["CachePolicy"]

    assert policy["required"] == ["ttl"]
    assert policy["additionalProperties"] is False
    assert policy["properties"]["ttl"]["exclusiveMinimum"] == 0
    assert policy["properties"]["ttl"]["maximum"] == MAX_CACHE_TTL

"""`source.parameter_ignored`: a warning for an llm node parameter its source's API does not take
(Anthropic's Messages API takes no temperature or top_p), never a violation."""

from __future__ import annotations

from typing import Any

import pytest

from agentflow_grpc.spec import validate_spec

SOURCES = {"claude": "anthropic", "gpt": "openai", "gem": "gemini"}


def spec(source: str, **config: Any) -> dict[str, Any]:
    return {
        "api_version": "agentflow/v1",
        "name": "ask",
        "nodes": [
            {"id": "start", "type": "input"},
            {"id": "ask", "type": "llm", "source": source, "config": {"prompt": "hi", **config}},
        ],
        "edges": [{"from": "start", "to": "ask"}],
        "outputs": {"answer": {"from": "nodes.ask.output.text"}},
    }


def test_temperature_and_top_p_on_an_anthropic_source_are_warned_of_at_their_paths() -> None:
    result = validate_spec(spec("claude", temperature=0.2, top_p=0.9), sources=SOURCES)
    assert result.ok, result.violations
    assert [(w.path, w.code.value) for w in result.warnings] == [
        ("/nodes/1/config/temperature", "source.parameter_ignored"),
        ("/nodes/1/config/top_p", "source.parameter_ignored"),
    ]
    assert "anthropic" in result.warnings[0].message


@pytest.mark.parametrize("source", ["gpt", "gem"])
def test_sources_whose_api_takes_them_are_not_warned_of(source: str) -> None:
    result = validate_spec(spec(source, temperature=0.2, top_p=0.9), sources=SOURCES)
    assert result.ok
    assert result.warnings == ()


def test_an_anthropic_node_without_them_and_a_spec_checked_without_sources_are_quiet() -> None:
    assert validate_spec(spec("claude", max_tokens=50), sources=SOURCES).warnings == ()
    assert validate_spec(spec("claude", temperature=0.2)).warnings == ()

"""Response cache keys and entries: what changes a key, what does not, and what is kept."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agentflow_grpc.model.events import TokenUsage
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.nodes.response_cache import CachedReply, request_key
from agentflow_grpc.sources.base import ChatRequest, ChatResult

SOURCE = SourceDefinition(
    name="main",
    type="openai",
    config={"base_url": "https://llm.example/v1", "model": "gpt-x"},
    secrets={"api_key": "sk-one"},
)
REQUEST = ChatRequest(
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    temperature=0.2,
)

# Another value for every ChatRequest field: each must change the key (except `stream`).
OTHER_VALUES: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "Be brief."}],
    "model": "gpt-y",
    "temperature": 0.3,
    "top_p": 0.5,
    "max_tokens": 10,
    "response_format": "json",
    "output_schema": {"type": "object"},
}


def key(
    request: ChatRequest = REQUEST, source: SourceDefinition = SOURCE, namespace: str = "t1"
) -> str:
    return request_key(namespace, source, request)


def source_with(**config: Any) -> SourceDefinition:
    return SourceDefinition(
        name=SOURCE.name, type=SOURCE.type, config={**SOURCE.config, **config}, secrets={}
    )


def test_a_key_is_a_hex_sha256_and_stable() -> None:
    assert key() == key()
    assert len(key()) == 64
    assert set(key()) <= set("0123456789abcdef")


def test_every_request_field_but_stream_is_in_the_key() -> None:
    names = {field.name for field in dataclasses.fields(ChatRequest)}
    assert names - {"stream"} <= set(OTHER_VALUES), "give new ChatRequest fields another value"
    for name in sorted(names - {"stream"}):
        changed = dataclasses.replace(REQUEST, **{name: OTHER_VALUES[name]})
        assert key(changed) != key(), name


def test_streaming_or_not_is_the_same_request() -> None:
    assert key(dataclasses.replace(REQUEST, stream=False)) == key()


def test_the_source_default_model_is_the_same_as_naming_it() -> None:
    assert key(dataclasses.replace(REQUEST, model="gpt-x")) == key()
    assert key(dataclasses.replace(REQUEST, model="gpt-y")) != key()


@pytest.mark.parametrize(
    "source",
    [
        source_with(base_url="https://other.example/v1"),
        source_with(model="gpt-y"),
        source_with(default_headers={"x-variant": "b"}),
        SourceDefinition(name="main", type="anthropic", config=SOURCE.config),
    ],
    ids=["base_url", "default_model", "headers", "type"],
)
def test_the_provider_is_in_the_key(source: SourceDefinition) -> None:
    assert key(source=source) != key()


@pytest.mark.parametrize(
    "source",
    [
        SourceDefinition(
            name="main", type="openai", config=SOURCE.config, secrets={"api_key": "x"}
        ),
        SourceDefinition(name="renamed", id="s-2", type="openai", config=SOURCE.config),
        source_with(timeout=5.0),
        source_with(limits={"requests_per_minute": 10}),
    ],
    ids=["api_key", "name_and_id", "timeout", "limits"],
)
def test_what_does_not_change_the_answer_is_not_in_the_key(source: SourceDefinition) -> None:
    assert key(source=source) == key()


def test_the_namespace_is_in_the_key() -> None:
    assert key(namespace="t2") != key(namespace="t1")


def test_a_reply_round_trips_and_garbage_is_refused() -> None:
    reply = CachedReply.of(ChatResult("hello", "gpt-x", "stop", TokenUsage(3, 4, 7)))

    assert CachedReply.from_dict(reply.to_dict()) == reply
    assert CachedReply.from_dict({**reply.to_dict(), "usage": None}).usage is None
    for garbage in (None, [], {"text": 3}, {"usage": {}}):
        with pytest.raises(ValueError, match="text"):
            CachedReply.from_dict(garbage)

"""The `anthropic` source beyond the conformance suite: what a ChatRequest becomes on Anthropic's
Messages API (system prompt, turns, max_tokens, JSON output, prompt caching), usage with the
prompt cache's tokens, every stop reason and error, spans and metrics; driven through the real
`anthropic` SDK against the fake provider's Messages API (agentflow_grpc/testing/_anthropic.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from support.chat_metrics import RecordingMetrics
from support.network import closed_port

from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability import spans
from agentflow_grpc.sources.anthropic_messages import (
    DEFAULT_MAX_TOKENS,
    FINISH_REASONS,
    JSON_INSTRUCTION,
    OPENING_TURN,
    AnthropicAdapter,
    AnthropicSource,
)
from agentflow_grpc.sources.base import (
    UNRECORDED,
    ChatModel,
    ChatRequest,
    ChatResult,
    ImageModel,
    finish_reason,
)
from agentflow_grpc.spec.checks.references import SOURCE_TYPES_BY_NODE_TYPE
from agentflow_grpc.testing import FakeProviderServer, RecordedRequest

API_KEY = "sk-ant-unit-3f9c1e"
MESSAGES = "/v1/messages"


def definition(url: str, **config: Any) -> SourceDefinition:
    return SourceDefinition(
        name="claude",
        type="anthropic",
        config={"base_url": url, "model": "fake-model", **config},
        secrets={"api_key": API_KEY},
    )


def open_source(url: str, **config: Any) -> AnthropicSource:
    return AnthropicAdapter(UNRECORDED).open(definition(url, **config))


async def chat(
    provider: FakeProviderServer, request: ChatRequest, **config: Any
) -> tuple[ChatResult, list[str]]:
    source = open_source(provider.url, **config)
    tokens: list[str] = []
    try:
        result = await source.chat(request, tokens.append)
    finally:
        await source.aclose()
    return result, tokens


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def sent(provider: FakeProviderServer) -> RecordedRequest:
    """The one messages request the provider received."""
    (request,) = [r for r in provider.requests if r.path == MESSAGES]
    return request


def body(provider: FakeProviderServer) -> dict[str, Any]:
    found: dict[str, Any] = sent(provider).body
    return found


# --- what a request becomes ---


async def test_system_messages_become_the_system_parameter_and_turns_alternate(
    provider: FakeProviderServer,
) -> None:
    request = ChatRequest(
        [
            {"role": "system", "content": "You are terse."},
            user("first"),
            user("second"),
            {"role": "assistant", "content": "noted"},
            {"role": "system", "content": "Answer in French."},
            user("third"),
        ]
    )
    result, _ = await chat(provider, request)

    sent_body = body(provider)
    assert sent_body["system"] == "You are terse.\n\nAnswer in French."
    assert sent_body["messages"] == [
        {"role": "user", "content": "first\n\nsecond"},
        {"role": "assistant", "content": "noted"},
        {"role": "user", "content": "third"},
    ]
    assert result.text == "Echo: third"


async def test_a_conversation_the_assistant_opens_gets_a_user_turn_first(
    provider: FakeProviderServer,
) -> None:
    await chat(provider, ChatRequest([{"role": "assistant", "content": "Hello!"}, user("hi")]))

    assert body(provider)["messages"] == [
        {"role": "user", "content": OPENING_TURN},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "hi"},
    ]


async def test_a_request_of_system_text_only_sends_it_as_the_user_turn(
    provider: FakeProviderServer,
) -> None:
    result, _ = await chat(provider, ChatRequest([{"role": "system", "content": "Say hi."}]))

    assert "system" not in body(provider)
    assert body(provider)["messages"] == [{"role": "user", "content": "Say hi."}]
    assert result.text == "Echo: Say hi."


async def test_the_key_and_api_version_go_in_anthropic_s_headers_to_the_api_root(
    provider: FakeProviderServer,
) -> None:
    # An OpenAI-compatible config's root (…/v1) works too: the SDK adds /v1/messages itself.
    for base_url in (provider.url, f"{provider.url}/v1", f"{provider.url}/v1/"):
        provider.reset()
        await chat(provider, ChatRequest([user("hi")]), base_url=base_url)
        headers = sent(provider).headers
        assert headers["anthropic-version"]
        assert API_KEY in (headers.get("x-api-key"), headers.get("authorization", "")[7:])


async def test_max_tokens_comes_from_the_request_else_the_source_else_the_default(
    provider: FakeProviderServer,
) -> None:
    await chat(provider, ChatRequest([user("hi")]))
    assert body(provider)["max_tokens"] == DEFAULT_MAX_TOKENS == 4096

    provider.reset()
    await chat(provider, ChatRequest([user("hi")]), max_tokens=1000)
    assert body(provider)["max_tokens"] == 1000

    provider.reset()
    await chat(provider, ChatRequest([user("hi")], max_tokens=50), max_tokens=1000)
    assert body(provider)["max_tokens"] == 50


async def test_sampling_parameters_are_never_sent(provider: FakeProviderServer) -> None:
    # API version 2026-10-21, the SDK's, refuses temperature and top_p (the fake does too).
    await chat(provider, ChatRequest([user("hi")], temperature=0.2, top_p=0.9, model="claude-x"))

    assert not {"temperature", "top_p", "output_config", "cache_control"} & set(body(provider))
    assert body(provider)["model"] == "claude-x"


async def test_the_fake_refuses_sampling_parameters_as_api_version_2026_10_21_does(
    provider: FakeProviderServer,
) -> None:
    request = {"model": "m", "max_tokens": 10, "temperature": 1.0, "messages": [user("hi")]}
    headers = {"x-api-key": "k", "anthropic-version": "2026-10-21"}
    async with aiohttp.ClientSession() as session:
        url = f"{provider.url}{MESSAGES}"
        async with session.post(url, json=request, headers=headers) as response:
            assert response.status == 400
            answer = await response.json()
        older = {**headers, "anthropic-version": "2023-06-01"}
        async with session.post(url, json=request, headers=older) as response:
            assert response.status == 200
    assert answer["error"] == {
        "type": "invalid_request_error",
        "message": "temperature: Extra inputs are not permitted",
    }


async def test_a_request_without_a_model_anywhere_fails_before_any_call(
    provider: FakeProviderServer,
) -> None:
    source = AnthropicAdapter(UNRECORDED).open(
        SourceDefinition(
            name="claude",
            type="anthropic",
            config={"base_url": provider.url},
            secrets={"api_key": API_KEY},
        )
    )
    try:
        with pytest.raises(NodeFailure) as caught:
            await source.chat(ChatRequest([user("hi")]), lambda _: None)
    finally:
        await source.aclose()
    assert caught.value.code == "source.no_model"
    assert provider.requests == []


# --- JSON output ---

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "score": {"type": "integer"}},
    "required": ["label", "score"],
}


@pytest.mark.parametrize("stream", [True, False])
async def test_an_output_schema_is_sent_as_structured_outputs(
    provider: FakeProviderServer, stream: bool
) -> None:
    request = ChatRequest(
        [user("classify")], response_format="json", output_schema=SCHEMA, stream=stream
    )
    result, _ = await chat(provider, request)

    output_format = body(provider)["output_config"]["format"]
    assert output_format["type"] == "json_schema"
    # The SDK's transform: objects closed, as structured outputs need.
    assert output_format["schema"]["additionalProperties"] is False
    assert output_format["schema"]["properties"].keys() == SCHEMA["properties"].keys()
    assert "system" not in body(provider)
    assert json.loads(result.text) == {"label": "text", "score": 1}


async def test_a_nullable_type_list_is_sent_as_an_any_of_and_schema_uris_dropped(
    provider: FakeProviderServer,
) -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"due": {"type": ["string", "null"], "format": "date"}},
        "required": ["due"],
    }
    request = ChatRequest([user("when")], response_format="json", output_schema=schema)
    result, _ = await chat(provider, request)

    sent_schema = body(provider)["output_config"]["format"]["schema"]
    assert "description" not in sent_schema  # `$schema` is not an unknown keyword to describe
    assert sent_schema["properties"]["due"] == {
        "anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]
    }
    assert json.loads(result.text) == {"due": "2024-01-01"}


async def test_plain_json_is_asked_for_in_the_system_prompt_without_a_prefill(
    provider: FakeProviderServer,
) -> None:
    provider.add_rule(json={"ok": True})
    request = ChatRequest(
        [{"role": "system", "content": "You grade essays."}, user("grade")],
        response_format="json",
    )
    result, _ = await chat(provider, request)

    sent_body = body(provider)
    assert sent_body["system"] == f"You grade essays.\n\n{JSON_INSTRUCTION}"
    assert "output_config" not in sent_body
    assert sent_body["messages"][-1] == user("grade")  # no assistant turn prefilled
    assert json.loads(result.text) == {"ok": True}


async def test_without_structured_outputs_the_schema_goes_in_the_system_prompt(
    provider: FakeProviderServer,
) -> None:
    request = ChatRequest([user("classify")], response_format="json", output_schema=SCHEMA)
    await chat(provider, request, structured_outputs=False)

    sent_body = body(provider)
    assert "output_config" not in sent_body
    assert sent_body["system"].startswith(JSON_INSTRUCTION)
    assert json.dumps(SCHEMA) in sent_body["system"]


async def test_a_schema_structured_outputs_cannot_take_goes_in_the_system_prompt(
    provider: FakeProviderServer,
) -> None:
    untyped = {"properties": {"label": {"type": "string"}}}  # no `type`: the SDK refuses it
    request = ChatRequest([user("classify")], response_format="json", output_schema=untyped)
    await chat(provider, request)

    assert "output_config" not in body(provider)
    assert json.dumps(untyped) in body(provider)["system"]


# --- usage and the prompt cache ---


@pytest.mark.parametrize("stream", [True, False])
async def test_tokens_read_from_the_prompt_cache_count_within_the_prompt_tokens(
    provider: FakeProviderServer, stream: bool
) -> None:
    provider.add_rule(cache_read_tokens=4)
    prompt = "one two three four five six"
    result, _ = await chat(provider, ChatRequest([user(prompt)], stream=stream))

    usage = result.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (6, 4, 0)
    assert usage.completion_tokens == len(result.text.split())
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.parametrize("stream", [True, False])
async def test_prompt_caching_asked_reports_the_tokens_written_to_the_cache(
    provider: FakeProviderServer, stream: bool
) -> None:
    provider.add_rule(cache_read_tokens=2)
    request = ChatRequest([{"role": "system", "content": "a b c"}, user("d e f g")], stream=stream)
    result, _ = await chat(provider, request, prompt_cache="1h")

    assert body(provider)["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    usage = result.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (7, 2, 5)


# --- stop reasons ---


@pytest.mark.parametrize(
    ("native", "shared"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "other"),
        ("a_reason_from_next_year", "other"),
        (None, None),
    ],
)
def test_every_stop_reason_maps_into_the_shared_vocabulary(
    native: str | None, shared: str | None
) -> None:
    assert finish_reason(native, FINISH_REASONS) == shared


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    ("finish", "expected"), [("stop", "stop"), ("length", "length"), ("content_filter", None)]
)
async def test_the_fake_s_stop_reasons_come_back_mapped(
    provider: FakeProviderServer, stream: bool, finish: str, expected: str | None
) -> None:
    provider.add_rule(finish=finish, reply="Partly said")
    result, _ = await chat(provider, ChatRequest([user("hi")], stream=stream))

    # A refusal after some text keeps the text: only an empty one is content_blocked.
    assert result.finish_reason == (expected or "content_filter")
    assert result.text == "Partly said"


# --- errors ---


@pytest.mark.parametrize(
    ("status", "code", "retryable", "retry_after"),
    [
        (400, "provider.rejected", False, None),
        (401, "provider.unauthenticated", False, None),
        (403, "provider.unauthenticated", False, None),
        (404, "provider.rejected", False, None),
        (413, "provider.rejected", False, None),
        (429, "provider.rate_limited", True, 12.0),
        (500, "provider.unavailable", True, None),
        (504, "provider.unavailable", True, None),
        (529, "provider.unavailable", True, 12.0),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
async def test_each_error_status_maps_to_its_failure(
    provider: FakeProviderServer,
    status: int,
    code: str,
    retryable: bool,
    retry_after: float | None,
    stream: bool,
) -> None:
    provider.add_rule(status=status, retry_after="12", times=1)
    with pytest.raises(NodeFailure) as caught:
        await chat(provider, ChatRequest([user("hi")], stream=stream))

    failure = caught.value
    assert (failure.code, failure.retryable, failure.retry_after) == (code, retryable, retry_after)
    assert API_KEY not in str(failure)


async def test_the_error_body_is_anthropic_s_and_its_message_is_the_failure_s(
    provider: FakeProviderServer,
) -> None:
    provider.add_rule(status=400, message="max_tokens: 99999 > 64000, the most for this model")
    with pytest.raises(NodeFailure) as caught:
        await chat(provider, ChatRequest([user("hi")]))
    assert caught.value.message == "HTTP 400: max_tokens: 99999 > 64000, the most for this model"


async def test_a_prompt_too_long_is_context_too_long_streamed_or_not(
    provider: FakeProviderServer,
) -> None:
    for stream in (True, False):
        provider.add_rule(context_too_long=True, times=1)
        with pytest.raises(NodeFailure) as caught:
            await chat(provider, ChatRequest([user("hi")], stream=stream))
        assert (caught.value.code, caught.value.retryable) == ("provider.context_too_long", False)
        assert "prompt is too long" in caught.value.message


@pytest.fixture
async def breaking_stream() -> AsyncIterator[str]:
    """A server whose messages stream begins, then fails with an `overloaded_error` event, as
    Anthropic's does when it is overloaded after answering 200."""

    async def messages(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "fake-model",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 1},
            },
        }
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        await response.write(f"event: message_start\ndata: {json.dumps(start)}\n\n".encode())
        await response.write(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post(MESSAGES, messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_an_error_event_mid_stream_fails_as_its_error_type_says(
    breaking_stream: str,
) -> None:
    metrics = RecordingMetrics()
    source = AnthropicAdapter(metrics).open(definition(breaking_stream))
    try:
        with pytest.raises(NodeFailure) as caught:
            await source.chat(ChatRequest([user("hi")]), lambda _: None)
    finally:
        await source.aclose()
    assert (caught.value.code, caught.value.retryable) == ("provider.unavailable", True)
    assert "Overloaded" in caught.value.message
    assert metrics.failures == ["529"]


async def test_an_unreachable_api_is_unavailable_and_retryable() -> None:
    source = open_source(f"http://127.0.0.1:{closed_port()}")
    try:
        with pytest.raises(NodeFailure) as caught:
            await source.chat(ChatRequest([user("hi")]), lambda _: None)
    finally:
        await source.aclose()
    assert (caught.value.code, caught.value.retryable) == ("provider.unavailable", True)


# --- check, capabilities ---


async def test_check_lists_anthropic_s_models(provider: FakeProviderServer) -> None:
    source = open_source(provider.url)
    try:
        said = await source.check()
    finally:
        await source.aclose()
    assert said == f"listed 1 model(s) at {provider.url}"
    (request,) = provider.requests
    assert (request.path, "anthropic-version" in request.headers) == ("/v1/models", True)


async def test_the_fake_answers_anthropic_s_and_openai_s_model_lists_apart(
    provider: FakeProviderServer,
) -> None:
    headers = {"Authorization": "Bearer k"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{provider.url}/v1/models", headers=headers) as response:
            openai_list = await response.json()
        anthropic_headers = {**headers, "anthropic-version": "2023-06-01"}
        async with session.get(f"{provider.url}/v1/models", headers=anthropic_headers) as response:
            anthropic_list = await response.json()
    assert openai_list["object"] == "list"
    assert anthropic_list["has_more"] is False
    assert anthropic_list["data"][0]["type"] == "model"
    assert anthropic_list["first_id"] == anthropic_list["last_id"] == "fake-model"


@pytest.mark.parametrize(
    ("headers", "status", "error_type", "message"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "authentication_error", "x-api-key header"),
        ({"x-api-key": "k"}, 400, "invalid_request_error", "anthropic-version: header"),
    ],
)
async def test_the_fake_refuses_a_request_without_anthropic_s_headers_as_the_api_does(
    provider: FakeProviderServer,
    headers: dict[str, str],
    status: int,
    error_type: str,
    message: str,
) -> None:
    request = {"model": "fake-model", "max_tokens": 10, "messages": [user("hi")]}
    async with aiohttp.ClientSession() as session:
        url = f"{provider.url}{MESSAGES}"
        async with session.post(url, json=request, headers=headers) as response:
            assert response.status == status
            answer = await response.json()
    assert answer["type"] == "error"
    assert answer["error"]["type"] == error_type
    assert message in answer["error"]["message"]


async def test_anthropic_sources_make_no_images_and_image_nodes_may_not_use_them() -> None:
    source = open_source("http://127.0.0.1:9")
    await source.aclose()
    assert isinstance(source, ChatModel)
    assert not isinstance(source, ImageModel)
    assert "anthropic" not in SOURCE_TYPES_BY_NODE_TYPE["image"]
    assert "anthropic" in SOURCE_TYPES_BY_NODE_TYPE["llm"]


# --- spans and metrics ---


async def test_calls_are_recorded_under_the_anthropic_provider(
    provider: FakeProviderServer,
) -> None:
    metrics = RecordingMetrics()
    source = AnthropicAdapter(metrics).open(definition(provider.url))
    try:
        await source.chat(ChatRequest([user("one two")]), lambda _: None)
        provider.add_rule(status=529, times=1)
        with pytest.raises(NodeFailure):
            await source.chat(ChatRequest([user("one two")]), lambda _: None)
    finally:
        await source.aclose()
    assert metrics.labels == [("anthropic", "fake-model")]
    assert (metrics.successes, metrics.first_chunks) == (1, 1)
    assert metrics.tokens == [(2, 3)]  # "Echo: one two"
    assert metrics.failures == ["529"]


@pytest.fixture
def recorded() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    installed = spans.install(tracer_provider, content=False)
    yield exporter
    installed.uninstall()
    tracer_provider.shutdown()


async def test_a_call_is_one_chat_client_span_with_the_cache_token_counts(
    provider: FakeProviderServer, recorded: InMemorySpanExporter
) -> None:
    provider.add_rule(cache_read_tokens=1)
    request = ChatRequest([user("one two three")], max_tokens=64, response_format="json")
    await chat(provider, request, prompt_cache="5m")

    (span,) = recorded.get_finished_spans()  # the SDK's own spans are off
    assert (span.name, span.kind) == ("chat fake-model", SpanKind.CLIENT)
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert attributes["gen_ai.output.type"] == "json"
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    prompt_tokens = 3 + len(JSON_INSTRUCTION.split())  # the system prompt asks for JSON
    assert attributes["gen_ai.usage.input_tokens"] == prompt_tokens
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 1
    assert attributes["gen_ai.usage.cache_creation.input_tokens"] == prompt_tokens - 1
    assert "gen_ai.input.messages" not in attributes

"""The `gemini` source beyond the conformance suite: what a ChatRequest becomes on the Gemini API
(system instruction, `user`/`model` turns, generation config, JSON output), usage with cached and
thinking tokens, every finish reason, a refused prompt, the error table (Google's error bodies,
RetryInfo, a bad key), images from an image model, spans and metrics; driven through the real
`google-genai` SDK against the fake provider's Gemini API (agentflow_grpc/testing/_gemini.py).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from google.genai import errors, types
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from support.chat_metrics import RecordingMetrics
from support.network import closed_port

from agentflow_grpc.model.errors import SourceConfigError
from agentflow_grpc.model.events import TokenUsage
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability import spans
from agentflow_grpc.sources.base import (
    UNRECORDED,
    ChatRequest,
    ChatResult,
    ImageRequest,
    ImageResult,
    finish_reason,
)
from agentflow_grpc.sources.gemini import (
    FINISH_REASONS,
    GeminiAdapter,
    GeminiSource,
    image_config,
    provider_failure,
    read_usage,
    retry_delay,
)
from agentflow_grpc.spec.checks.references import SOURCE_TYPES_BY_NODE_TYPE
from agentflow_grpc.testing import TINY_PNG, FakeProviderServer, RecordedRequest
from agentflow_grpc.testing._gemini import gemini_path

API_KEY = "AIza-unit-5be0c2"
STREAM = gemini_path("fake-model")
WHOLE = gemini_path("fake-model", "generateContent")


def definition(url: str, **config: Any) -> SourceDefinition:
    return SourceDefinition(
        name="gemini",
        type="gemini",
        config={"base_url": url, "model": "fake-model", "image_model": "fake-image", **config},
        secrets={"api_key": API_KEY},
    )


def open_source(url: str, **config: Any) -> GeminiSource:
    return GeminiAdapter(UNRECORDED).open(definition(url, **config))


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


async def failure(provider: FakeProviderServer, *, stream: bool = True) -> NodeFailure:
    with pytest.raises(NodeFailure) as caught:
        await chat(provider, ChatRequest([user("hi")], stream=stream))
    assert API_KEY not in str(caught.value)
    return caught.value


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def sent(provider: FakeProviderServer) -> RecordedRequest:
    """The one generate request the provider received."""
    (request,) = [r for r in provider.requests if r.path in (STREAM, WHOLE)]
    return request


def body(provider: FakeProviderServer) -> dict[str, Any]:
    found: dict[str, Any] = sent(provider).body
    return found


# --- what a request becomes ---


async def test_system_messages_become_the_system_instruction_and_roles_user_and_model(
    provider: FakeProviderServer,
) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        user("one"),
        {"role": "assistant", "content": "two"},
        user("three"),
        user("four"),
        {"role": "system", "content": "No emoji."},
    ]
    result, _ = await chat(provider, ChatRequest(messages))
    assert body(provider)["systemInstruction"]["parts"] == [
        {"text": "Be brief."},
        {"text": "No emoji."},
    ]
    assert body(provider)["contents"] == [
        {"role": "user", "parts": [{"text": "one"}]},
        {"role": "model", "parts": [{"text": "two"}]},
        {"role": "user", "parts": [{"text": "three"}, {"text": "four"}]},  # one turn
    ]
    assert result.text == "Echo: three four"
    assert result.usage is not None
    assert result.usage.prompt_tokens == 8  # the system instruction counts


async def test_the_key_goes_in_x_goog_api_key_to_the_versioned_path_with_default_headers(
    provider: FakeProviderServer,
) -> None:
    await chat(provider, ChatRequest([user("hi")]), default_headers={"User-Agent": "agentflow"})
    request = sent(provider)
    assert request.path == "/v1beta/models/fake-model:streamGenerateContent"
    assert request.headers["x-goog-api-key"] == API_KEY
    assert "authorization" not in request.headers
    assert request.headers["user-agent"].endswith(" agentflow")  # after the SDK's own


async def test_sampling_parameters_and_max_tokens_go_in_the_generation_config(
    provider: FakeProviderServer,
) -> None:
    request = ChatRequest([user("hi")], temperature=0.2, top_p=0.9, max_tokens=64, stream=False)
    await chat(provider, request)
    assert sent(provider).path == WHOLE
    assert body(provider)["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 64,
    }


async def test_a_request_without_a_model_anywhere_fails_before_any_call(
    provider: FakeProviderServer,
) -> None:
    source = open_source(provider.url, model=None)
    try:
        with pytest.raises(NodeFailure) as caught:
            await source.chat(ChatRequest([user("hi")]), lambda _: None)
    finally:
        await source.aclose()
    assert caught.value.code == "source.no_model"
    assert provider.requests == []


async def test_a_model_the_node_names_is_the_one_called(provider: FakeProviderServer) -> None:
    result, _ = await chat(provider, ChatRequest([user("hi")], model="gemini-2.5-flash"))
    assert sent_paths(provider) == [gemini_path("gemini-2.5-flash")]
    assert result.model == "gemini-2.5-flash"  # the response's modelVersion


def sent_paths(provider: FakeProviderServer) -> list[str]:
    return [r.path for r in provider.requests]


# --- JSON output ---


async def test_an_output_schema_is_sent_as_a_json_schema_with_the_json_mime_type(
    provider: FakeProviderServer,
) -> None:
    schema = {
        "type": "object",
        "properties": {"total": {"type": "number"}, "currency": {"enum": ["EUR", "USD"]}},
        "required": ["total", "currency"],
    }
    result, _ = await chat(provider, ChatRequest([user("invoice")], output_schema=schema))
    config = body(provider)["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert json.loads(result.text) == {"total": 1.0, "currency": "EUR"}


async def test_plain_json_asks_for_the_json_mime_type_only(provider: FakeProviderServer) -> None:
    result, _ = await chat(provider, ChatRequest([user("hi")], response_format="json"))
    assert body(provider)["generationConfig"] == {"responseMimeType": "application/json"}
    assert json.loads(result.text) == {"echo": "hi"}


# --- usage ---


@pytest.mark.parametrize("stream", [True, False])
async def test_cached_prompt_tokens_count_within_the_prompt_tokens(
    provider: FakeProviderServer, stream: bool
) -> None:
    provider.add_rule(cache_read_tokens=2)
    result, _ = await chat(provider, ChatRequest([user("one two three")], stream=stream))
    # "Echo: one two three": 4 tokens; the prompt's 3, 2 of them from the cache.
    assert result.usage == TokenUsage(3, 4, 7, cache_read_tokens=2)


def test_thinking_is_output_and_tool_use_prompts_are_input() -> None:
    usage = types.GenerateContentResponseUsageMetadata(
        prompt_token_count=100,
        cached_content_token_count=60,
        tool_use_prompt_token_count=20,
        candidates_token_count=30,
        thoughts_token_count=50,
        total_token_count=200,
    )
    assert read_usage(usage) == TokenUsage(120, 80, 200, cache_read_tokens=60)
    assert read_usage(types.GenerateContentResponseUsageMetadata()) == TokenUsage()
    assert read_usage(None) is None


# --- finish reasons and filters ---


@pytest.mark.parametrize(
    ("native", "shared"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("CONTINUATION", "length"),  # the SDK's automatic continuation is off
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("IMAGE_PROHIBITED_CONTENT", "content_filter"),
        ("IMAGE_RECITATION", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "other"),
        ("LANGUAGE", "other"),
        ("NO_IMAGE", "other"),
        ("OTHER", "other"),
        ("FINISH_REASON_UNSPECIFIED", "other"),
        ("A_REASON_OF_NEXT_YEAR", "other"),
    ],
)
def test_every_finish_reason_maps_into_the_shared_vocabulary(native: str, shared: str) -> None:
    assert finish_reason(native, FINISH_REASONS) == shared


def test_every_finish_reason_the_sdk_knows_is_mapped_on_purpose() -> None:
    known = {reason.value for reason in types.FinishReason}
    assert set(FINISH_REASONS) <= known
    others = known - set(FINISH_REASONS)
    assert all("SAFETY" not in reason and "PROHIBITED" not in reason for reason in others)


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    ("finish", "expected"), [("stop", "stop"), ("length", "length"), ("content_filter", None)]
)
async def test_the_fake_s_finish_reasons_come_back_mapped(
    provider: FakeProviderServer, stream: bool, finish: str, expected: str | None
) -> None:
    provider.add_rule(finish=finish, reply="partly written")
    result, tokens = await chat(provider, ChatRequest([user("hi")], stream=stream))
    assert result.text == "partly written"
    assert result.finish_reason == (expected or "content_filter")  # text: passed on
    assert tokens == (["partly ", "writte", "n"] if stream else [])


@pytest.mark.parametrize("stream", [True, False])
async def test_a_refused_prompt_is_content_blocked_naming_the_reason(
    provider: FakeProviderServer, stream: bool
) -> None:
    provider.add_rule(prompt_blocked="PROHIBITED_CONTENT")
    blocked = await failure(provider, stream=stream)
    assert (blocked.code, blocked.retryable) == ("provider.content_blocked", False)
    assert "refused the prompt (PROHIBITED_CONTENT)" in blocked.message


async def test_a_refused_prompt_still_counts_its_tokens(provider: FakeProviderServer) -> None:
    provider.add_rule(prompt_blocked="SAFETY")
    metrics = RecordingMetrics()
    source = GeminiAdapter(metrics).open(definition(provider.url))
    try:
        with pytest.raises(NodeFailure):
            await source.chat(ChatRequest([user("one two")]), lambda _: None)
    finally:
        await source.aclose()
    assert metrics.tokens == [(2, 0)]
    assert metrics.failures == ["provider.content_blocked"]


# --- errors ---


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, "provider.rejected", False),
        (401, "provider.unauthenticated", False),
        (403, "provider.unauthenticated", False),
        (404, "provider.rejected", False),
        (429, "provider.rate_limited", True),
        (500, "provider.unavailable", True),
        (503, "provider.unavailable", True),
        (504, "provider.unavailable", True),
    ],
)
async def test_each_error_status_maps_to_its_failure(
    provider: FakeProviderServer, status: int, code: str, retryable: bool
) -> None:
    provider.add_rule(status=status, times=1)
    failed = await failure(provider)
    assert (failed.code, failed.retryable) == (code, retryable)
    assert failed.retry_after is None


async def test_the_error_body_is_google_s_and_its_status_and_message_are_the_failure_s(
    provider: FakeProviderServer,
) -> None:
    provider.add_rule(status=503, times=1)
    failed = await failure(provider, stream=False)
    overloaded = "The model is overloaded. Please try again later."
    assert failed.message == f"HTTP 503: UNAVAILABLE: {overloaded}"


@pytest.mark.parametrize("stream", [True, False])
async def test_a_prompt_too_long_is_context_too_long(
    provider: FakeProviderServer, stream: bool
) -> None:
    provider.add_rule(context_too_long=True, times=1)
    failed = await failure(provider, stream=stream)
    assert (failed.code, failed.retryable) == ("provider.context_too_long", False)
    assert "exceeds the maximum number of tokens allowed (1048576)" in failed.message


async def test_a_429_says_how_long_to_wait_in_its_retry_info(provider: FakeProviderServer) -> None:
    provider.add_rule(status=429, retry_after="7", times=1)
    source = open_source(provider.url)
    try:
        with pytest.raises(NodeFailure) as caught:
            await source.chat(ChatRequest([user("hi")]), lambda _: None)
    finally:
        await source.aclose()
    sdk_error = caught.value.__cause__
    assert isinstance(sdk_error, errors.ClientError)
    retry_info = [d for d in sdk_error.details["error"]["details"] if "RetryInfo" in d["@type"]]
    assert retry_info == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]
    assert caught.value.retry_after == 7.0


def client_error(status: int, error: dict[str, Any]) -> errors.ClientError:
    """The SDK's error for an error body as the Gemini API sends it (without the HTTP response,
    whose headers then say nothing)."""
    return errors.ClientError(status, {"error": {"code": status, **error}}, None)


def test_without_a_retry_after_header_the_wait_is_retry_info_s_retry_delay() -> None:
    # The Gemini API's own 429: the delay in a google.rpc.RetryInfo, a protobuf Duration.
    exc = client_error(
        429,
        {
            "message": "You exceeded your current quota.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "52.5s"},
            ],
        },
    )
    assert retry_delay(exc) == 52.5
    failed = provider_failure(exc)
    assert failed is not None
    assert (failed.code, failed.retry_after) == ("provider.rate_limited", 52.5)
    assert retry_delay(client_error(429, {"message": "slow down"})) is None


def test_google_s_answer_to_a_bad_key_is_unauthenticated() -> None:
    exc = client_error(
        400,
        {
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ],
        },
    )
    failed = provider_failure(exc)
    assert failed is not None
    assert (failed.code, failed.retryable) == ("provider.unauthenticated", False)


async def test_the_sdk_tries_once_the_node_retries(provider: FakeProviderServer) -> None:
    provider.add_rule(status=503, times=1)
    await failure(provider)
    assert sent_paths(provider) == [STREAM]  # no second try of the SDK's


async def test_an_unreachable_api_fails_at_once_unavailable_and_retryable() -> None:
    source = open_source(f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    try:
        with pytest.raises(NodeFailure) as caught:
            await source.chat(ChatRequest([user("hi")]), lambda _: None)
    finally:
        await source.aclose()
    assert (caught.value.code, caught.value.retryable) == ("provider.unavailable", True)
    # Left to itself the SDK sleeps 1-10 s and tries a refused connection again.
    assert time.monotonic() - started < 1


@pytest.fixture
async def breaking_stream() -> AsyncIterator[str]:
    """A Gemini API whose stream begins, then sends an error as its next event (as Google's
    does when the model fails mid-reply), or, for a prompt holding "drop", drops the
    connection."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        first = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]}
        await response.write(f"data: {json.dumps(first)}\r\n\r\n".encode())
        if "drop" in json.dumps(await request.json()):
            assert request.transport is not None
            request.transport.close()
            return response
        error = {"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}}
        await response.write(f"data: {json.dumps(error)}\r\n\r\n".encode())
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1beta/models/{call}", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("prompt", "error_type"), [("hi", "503"), ("drop", "ClientPayloadError")])
async def test_a_stream_that_fails_midway_is_unavailable_and_retryable(
    breaking_stream: str, prompt: str, error_type: str
) -> None:
    metrics = RecordingMetrics()
    source = GeminiAdapter(metrics).open(definition(breaking_stream))
    tokens: list[str] = []
    try:
        with pytest.raises(NodeFailure) as caught:
            await source.chat(ChatRequest([user(prompt)]), tokens.append)
    finally:
        await source.aclose()
    assert tokens == ["Hel"]
    assert (caught.value.code, caught.value.retryable) == ("provider.unavailable", True)
    assert metrics.failures == [error_type]


# --- the fake's Gemini API, as the real one answers ---


async def test_the_fake_refuses_a_request_without_a_key_as_google_does(
    provider: FakeProviderServer,
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(provider.url + WHOLE, json={"contents": []}) as response,
    ):
        assert response.status == 403
        error = (await response.json())["error"]
    assert (error["code"], error["status"]) == (403, "PERMISSION_DENIED")
    assert error["message"].startswith("Method doesn't allow unregistered callers")


async def test_the_fake_answers_an_sse_stream_of_generate_content_responses(
    provider: FakeProviderServer,
) -> None:
    request = {"contents": [{"role": "user", "parts": [{"text": "one two"}]}]}
    async with (
        aiohttp.ClientSession(headers={"x-goog-api-key": API_KEY}) as session,
        session.post(provider.url + STREAM + "?alt=sse", json=request) as response,
    ):
        assert response.content_type == "text/event-stream"
        raw = await response.text()
    events = [json.loads(e.removeprefix("data: ")) for e in raw.split("\r\n\r\n") if e]
    assert [e["candidates"][0]["content"]["parts"][0]["text"] for e in events] == [
        "Echo: ",
        "one ",
        "two",
    ]
    assert [e["candidates"][0].get("finishReason") for e in events] == [None, None, "STOP"]
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == 3
    assert {e["modelVersion"] for e in events} == {"fake-model"}
    assert len({e["responseId"] for e in events}) == 1


# --- check ---


async def test_check_lists_the_models(provider: FakeProviderServer) -> None:
    source = open_source(provider.url)
    try:
        said = await source.check()
    finally:
        await source.aclose()
    assert said == f"listed 1 model(s) at {provider.url}"
    assert [(r.method, r.path) for r in provider.requests] == [("GET", "/v1beta/models")]


# --- config ---


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"base_url": "https://generativelanguage.googleapis.com/v1beta/openai/"}, "base_url"),
        ({"base_url": "https://generativelanguage.googleapis.com/v1beta"}, "base_url"),
        ({"base_url": "generativelanguage.googleapis.com"}, "base_url"),
        ({"api_version": "beta"}, "api_version"),
        ({"default_headers": {"x-goog-api-key": "another"}}, "default_headers"),
        ({"azure_endpoint": "https://x.openai.azure.com"}, "azure_endpoint"),
    ],
)
def test_a_config_of_the_openai_compatible_endpoint_or_of_another_type_is_refused(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(SourceConfigError) as caught:
        GeminiAdapter(UNRECORDED).open(definition("https://example.com", **changes))
    assert f"config.{field}" in caught.value.message


async def test_the_defaults_are_google_s_api_root_v1beta_and_ten_minutes() -> None:
    source = GeminiAdapter(UNRECORDED).open(
        SourceDefinition(name="g", type="gemini", config={}, secrets={"api_key": API_KEY})
    )
    try:
        options = source._sdk()._api_client._http_options
        assert (options.base_url, options.api_version) == (
            "https://generativelanguage.googleapis.com",
            "v1beta",
        )
        assert options.timeout == 600_000
        assert options.retry_options is not None
        assert options.retry_options.attempts == 1
    finally:
        await source.aclose()


# --- images ---


async def generate(provider: FakeProviderServer, request: ImageRequest) -> ImageResult:
    source = open_source(provider.url)
    try:
        return await source.generate_images(request)
    finally:
        await source.aclose()


def image_request(**changes: Any) -> ImageRequest:
    fields: dict[str, Any] = {
        "prompt": "a brass lamp",
        "model": None,
        "size": "1024x1024",
        "n": 1,
        "quality": None,
        "output": "b64_json",
        **changes,
    }
    return ImageRequest(**fields)


async def test_an_image_comes_from_an_image_model_s_inline_data(
    provider: FakeProviderServer,
) -> None:
    result = await generate(provider, image_request(quality="hd"))
    assert result.images == [
        {"b64_json": base64.b64encode(TINY_PNG).decode(), "mime_type": "image/png"}
    ]
    assert result.model == "fake-image"
    (request,) = provider.requests
    assert request.path == gemini_path("fake-image", "generateContent")
    assert request.body["contents"] == [{"role": "user", "parts": [{"text": "a brass lamp"}]}]
    assert request.body["generationConfig"] == {  # no quality: Gemini has none
        "responseModalities": ["IMAGE"],
        "imageConfig": {"aspectRatio": "1:1"},
    }


async def test_a_url_asked_for_is_a_data_url_of_the_image(provider: FakeProviderServer) -> None:
    result = await generate(provider, image_request(output="url", n=3, model="other-image"))
    assert len(result.images) == 3
    for image in result.images:
        header, _, data = image["url"].partition(",")
        assert header == "data:image/png;base64"
        assert base64.b64decode(data) == TINY_PNG
    assert sent_paths(provider) == [gemini_path("other-image", "generateContent")] * 3


@pytest.mark.parametrize(
    ("size", "ratio", "image_size"),
    [
        ("1024x1024", "1:1", None),
        ("256x256", "1:1", None),
        ("1792x1024", "16:9", "2K"),
        ("1024x1792", "9:16", "2K"),
        ("1536x1024", "3:2", "2K"),
        ("1024x1536", "2:3", "2K"),
        ("2048x1536", "4:3", "2K"),
        ("2520x1080", "21:9", "4K"),
        ("4096x4096", "1:1", "4K"),
    ],
)
def test_a_size_becomes_the_nearest_aspect_ratio_and_a_size_class(
    size: str, ratio: str, image_size: str | None
) -> None:
    assert image_config(size) == types.ImageConfig(aspect_ratio=ratio, image_size=image_size)


async def test_the_fake_takes_every_aspect_ratio_and_size_class_the_source_sends(
    provider: FakeProviderServer,
) -> None:
    for size in ("1792x1024", "1080x2520", "4096x4096", "1200x1500"):
        await generate(provider, image_request(size=size))
    configs = [r.body["generationConfig"]["imageConfig"] for r in provider.requests]
    assert configs == [
        {"aspectRatio": "16:9", "imageSize": "2K"},
        {"aspectRatio": "9:16", "imageSize": "4K"},
        {"aspectRatio": "1:1", "imageSize": "4K"},
        {"aspectRatio": "4:5", "imageSize": "2K"},
    ]


async def test_a_filtered_image_is_content_blocked(provider: FakeProviderServer) -> None:
    provider.add_rule(finish="content_filter", times=1)
    with pytest.raises(NodeFailure) as caught:
        await generate(provider, image_request())
    assert (caught.value.code, caught.value.retryable) == ("provider.content_blocked", False)
    assert "IMAGE_SAFETY" in caught.value.message


async def test_one_image_failing_fails_the_call_and_stops_the_others(
    provider: FakeProviderServer,
) -> None:
    provider.add_rule(status=429, retry_after="3", times=1)
    provider.add_rule(delay=5)  # the others would take long
    started = time.monotonic()
    with pytest.raises(NodeFailure) as caught:
        await generate(provider, image_request(n=3))
    assert (caught.value.code, caught.value.retry_after) == ("provider.rate_limited", 3.0)
    assert time.monotonic() - started < 4


def test_image_nodes_may_use_gemini_sources() -> None:
    assert "gemini" in SOURCE_TYPES_BY_NODE_TYPE["image"]
    assert "gemini" in SOURCE_TYPES_BY_NODE_TYPE["llm"]


# --- spans and metrics ---


async def test_calls_are_recorded_under_the_gcp_gemini_provider(
    provider: FakeProviderServer,
) -> None:
    metrics = RecordingMetrics()
    source = GeminiAdapter(metrics).open(definition(provider.url))
    try:
        await source.chat(ChatRequest([user("one two")]), lambda _: None)
        await source.chat(ChatRequest([user("one")], model="gemini-2.5-pro"), lambda _: None)
        provider.add_rule(status=429, times=1)
        with pytest.raises(NodeFailure):
            await source.chat(ChatRequest([user("one two")], stream=False), lambda _: None)
    finally:
        await source.aclose()
    assert metrics.labels == [("gcp.gemini", "fake-model"), ("gcp.gemini", "_OTHER")]
    assert (metrics.successes, metrics.first_chunks) == (2, 2)
    assert metrics.tokens == [(2, 3), (1, 2)]  # "Echo: one two", "Echo: one"
    assert metrics.failures == ["429"]


@pytest.fixture
def recorded() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    installed = spans.install(tracer_provider, content=False)
    yield exporter
    installed.uninstall()
    tracer_provider.shutdown()


async def test_a_call_is_one_chat_client_span_with_the_cache_read_tokens(
    provider: FakeProviderServer, recorded: InMemorySpanExporter
) -> None:
    provider.add_rule(cache_read_tokens=2, finish="length")
    request = ChatRequest([user("one two three")], temperature=0.5, response_format="json")
    await chat(provider, request)

    (span,) = recorded.get_finished_spans()
    assert (span.name, span.kind) == ("chat fake-model", SpanKind.CLIENT)
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.output.type"] == "json"
    assert attributes["gen_ai.response.model"] == "fake-model"
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert attributes["gen_ai.usage.input_tokens"] == 3
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 2
    assert "gen_ai.usage.cache_creation.input_tokens" not in attributes
    assert "gen_ai.input.messages" not in attributes


async def test_images_are_one_generate_content_span_with_their_tokens(
    provider: FakeProviderServer, recorded: InMemorySpanExporter
) -> None:
    await generate(provider, image_request(n=2))
    (span,) = recorded.get_finished_spans()
    assert (span.name, span.kind) == ("generate_content fake-image", SpanKind.CLIENT)
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.output.type"] == "image"
    assert attributes["gen_ai.request.choice.count"] == 2
    assert attributes["gen_ai.usage.input_tokens"] == 6  # "a brass lamp", twice
    assert attributes["gen_ai.usage.output_tokens"] == 2 * 1290

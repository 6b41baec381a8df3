"""The fake OpenAI-compatible provider, exercised through the real openai SDK."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import jsonschema
import openai
import pytest
import pytest_asyncio

from agentflow_grpc.testing import (
    CHAT_PATH,
    IMAGES_PATH,
    FakeProviderServer,
    schema_instance,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
USER = [{"role": "user", "content": "hello fake world"}]


@pytest.fixture
def server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as running:
        yield running


@pytest_asyncio.fixture
async def client(server: FakeProviderServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=server.url + "/v1", api_key="test-key", max_retries=0
    ) as sdk:
        yield sdk


async def reply_to(client: openai.AsyncOpenAI, content: str = "hello fake world") -> str | None:
    completion = await client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": content}]
    )
    return completion.choices[0].message.content


@pytest.mark.asyncio
async def test_chat_echoes_the_last_user_message_with_word_usage(
    client: openai.AsyncOpenAI,
) -> None:
    completion = await client.chat.completions.create(
        model="gpt-fake",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "hello fake world"},
        ],
    )

    assert completion.model == "gpt-fake"
    assert completion.choices[0].message.content == "Echo: hello fake world"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (9, 4)
    assert completion.usage.total_tokens == 13


@pytest.mark.asyncio
async def test_echo_keeps_the_first_200_characters(client: openai.AsyncOpenAI) -> None:
    assert await reply_to(client, "x" * 300) == "Echo: " + "x" * 200


@pytest.mark.asyncio
async def test_streaming_sends_several_chunks_then_usage(client: openai.AsyncOpenAI) -> None:
    text = "The quick brown fox jumps over the lazy dog, twice."
    stream = await client.chat.completions.create(
        model="fake-model",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) >= 3
    assert "".join(pieces) == "Echo: hello fake world"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4

    stream = await client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": text}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo: " + text


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 12},
        "kind": {"type": "string", "enum": ["memo", "letter"]},
        "version": {"const": 3},
        "count": {"type": "integer", "minimum": 5},
        "ratio": {"type": "number", "maximum": 0.5},
        "done": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "owner": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
            "required": ["name"],
            "additionalProperties": False,
        },
        "note": {"anyOf": [{"type": "null"}, {"type": "string"}]},
        "maybe": {"type": ["null", "integer"], "exclusiveMinimum": 10},
    },
    "required": ["title", "kind", "count", "tags", "extra"],
}


@pytest.mark.asyncio
async def test_json_schema_reply_satisfies_the_schema(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="fake-model",
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "doc", "schema": SCHEMA}},
    )

    document = json.loads(completion.choices[0].message.content or "")
    jsonschema.validate(document, SCHEMA)
    assert document["kind"] == "memo"
    assert document["count"] == 5
    assert len(document["tags"]) == 2


@pytest.mark.parametrize(
    "schema",
    [
        SCHEMA,
        {},
        {"type": "string", "maxLength": 2},
        {"type": "string", "format": "date-time"},
        {"type": "array", "maxItems": 0},
        {"type": "integer", "minimum": 1.5, "maximum": 9},
        {"type": "number", "maximum": -3},
        {"oneOf": [{"type": "integer"}, {"type": "string"}]},
        {"properties": {"a": {"items": {"type": "boolean"}}}},
    ],
)
def test_schema_instance_is_valid(schema: dict[str, Any]) -> None:
    jsonschema.validate(schema_instance(schema), schema)


@pytest.mark.asyncio
async def test_json_object_reply_echoes(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="fake-model", messages=USER, response_format={"type": "json_object"}
    )

    assert json.loads(completion.choices[0].message.content or "") == {"echo": "hello fake world"}


@pytest.mark.asyncio
async def test_rules_match_in_order_and_wear_out(
    server: FakeProviderServer, client: openai.AsyncOpenAI
) -> None:
    server.add_rule(contains="weather", reply="sunny", times=1)
    server.add_rule(contains="weather", json={"forecast": ["rain"]})
    server.add_rule(model="other-model", reply="other")
    server.add_rule(path=IMAGES_PATH, reply="never used for chat")

    assert await reply_to(client, "the weather today?") == "sunny"
    assert json.loads(await reply_to(client, "the weather today?") or "") == {"forecast": ["rain"]}
    assert await reply_to(client, "hi") == "Echo: hi"
    completion = await client.chat.completions.create(model="other-model", messages=USER)
    assert completion.choices[0].message.content == "other"
    assert [rule.hits for rule in server.provider.rules] == [1, 1, 1, 0]


@pytest.mark.asyncio
async def test_server_errors_twice_then_succeeds(
    server: FakeProviderServer, client: openai.AsyncOpenAI
) -> None:
    server.add_rule(path=CHAT_PATH, status=500, times=2)

    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as raised:
            await reply_to(client)
        assert raised.value.status_code == 500
        assert raised.value.type == "server_error"
    assert await reply_to(client) == "Echo: hello fake world"


@pytest.mark.asyncio
async def test_rate_limit_error(server: FakeProviderServer, client: openai.AsyncOpenAI) -> None:
    server.add_rule(status=429, message="slow down")

    with pytest.raises(openai.RateLimitError) as raised:
        await reply_to(client)

    assert raised.value.code == "rate_limit_exceeded"
    assert raised.value.body == {
        "message": "slow down",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }


@pytest.mark.asyncio
async def test_delays_latency_and_chunk_delays(
    server: FakeProviderServer, client: openai.AsyncOpenAI
) -> None:
    server.add_rule(contains="slow", delay=0.3, times=1)
    server.add_rule(contains="broken", delay=0.3, status=503)
    server.add_rule(contains="drip", chunk_delay=0.05)

    started = time.monotonic()
    await reply_to(client, "slow")
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    await reply_to(client, "slow")
    assert time.monotonic() - started < 0.25

    started = time.monotonic()
    with pytest.raises(openai.InternalServerError):
        await reply_to(client, "broken")
    assert time.monotonic() - started >= 0.3

    started = time.monotonic()
    stream = await client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "drip drip"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert time.monotonic() - started >= 0.05 * (len(chunks) - 1)

    server.set_latency(0.3)
    started = time.monotonic()
    await client.models.list()
    assert time.monotonic() - started >= 0.3


@pytest.mark.asyncio
async def test_images_as_urls_and_base64(client: openai.AsyncOpenAI) -> None:
    by_url = await client.images.generate(prompt="a cat", n=2, response_format="url")
    encoded = await client.images.generate(prompt="a cat", response_format="b64_json")

    assert by_url.data is not None
    assert len(by_url.data) == 2
    async with aiohttp.ClientSession() as http:
        for image in by_url.data:
            assert image.url is not None
            async with http.get(image.url) as response:
                assert response.status == 200
                assert response.content_type == "image/png"
                assert (await response.read()).startswith(PNG_SIGNATURE)
    assert encoded.data is not None
    assert base64.b64decode(encoded.data[0].b64_json or "").startswith(PNG_SIGNATURE)


@pytest.mark.asyncio
async def test_models_are_listed(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()

    assert [model.id async for model in models] == ["fake-model"]


@pytest.mark.asyncio
async def test_missing_authorization_is_401(server: FakeProviderServer) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + CHAT_PATH, json={"model": "m", "messages": USER}) as response,
    ):
        assert response.status == 401
        error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_api_key"
    assert "API key" in error["message"]


@pytest.mark.asyncio
async def test_requests_are_logged_and_reset_clears_everything(
    server: FakeProviderServer, client: openai.AsyncOpenAI
) -> None:
    before = time.time()
    server.add_rule(contains="nothing matches this", reply="x")
    server.set_latency(0.01)
    await reply_to(client)

    [request] = server.requests
    assert request.method == "POST"
    assert request.path == CHAT_PATH
    assert request.body["messages"] == USER
    assert request.body["model"] == "fake-model"
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.headers["content-type"] == "application/json"
    assert before <= request.time <= time.time()

    server.reset()
    assert server.requests == []
    assert server.provider.rules == []
    assert server.provider.latency == 0.0


@pytest.mark.asyncio
async def test_http_control_api(server: FakeProviderServer, client: openai.AsyncOpenAI) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as http:
        async with http.post("/_fake/rules", json={"contains": "ping", "reply": "pong"}) as resp:
            assert resp.status == 201
            assert (await resp.json())["reply"] == "pong"
        async with http.post("/_fake/rules", json={"bogus": 1}) as resp:
            assert resp.status == 400
        async with http.put("/_fake/latency", json={"seconds": 0.05}) as resp:
            assert resp.status == 200
        assert server.provider.latency == 0.05

        assert await reply_to(client, "ping") == "pong"

        async with http.get("/_fake/requests") as resp:
            [logged] = (await resp.json())["requests"]
        assert logged["path"] == CHAT_PATH
        assert logged["body"]["messages"] == [{"role": "user", "content": "ping"}]
        async with http.post("/_fake/reset") as resp:
            assert resp.status == 200
    assert server.requests == []
    assert server.provider.latency == 0.0
    assert await reply_to(client, "ping") == "Echo: ping"


@pytest.mark.asyncio
def _server_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "fake-provider"}


async def test_async_context_manager_stops_its_thread() -> None:
    others = _server_threads()  # e.g. the session's shared server
    async with FakeProviderServer() as running:
        assert len(_server_threads() - others) == 1
        url = running.url
        async with aiohttp.ClientSession() as http, http.get(url + "/images/a.png") as response:
            assert response.status == 200

    assert _server_threads() == others
    with pytest.raises(RuntimeError, match="not running"):
        _ = running.url
    running.stop()  # idempotent


def test_standalone_entry_point() -> None:
    command = [sys.executable, "-m", "agentflow_grpc.testing", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            prefix = "fake provider listening on http://127.0.0.1:"
            assert line.startswith(prefix)
            request = urllib.request.Request(
                line.removeprefix("fake provider listening on ") + "/v1/models",
                headers={"Authorization": "Bearer x"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert json.load(response)["data"][0]["id"] == "fake-model"
        finally:
            process.terminate()
        assert process.wait(timeout=10) == 0

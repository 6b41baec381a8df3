"""The opt-in LLM response cache (`cache: {ttl}`), end to end: engine, real Valkey, fake provider.

Runs go through `ExecutionEngine` with the Redis cache the server uses, against the session's
Valkey (each test under a prefix of its own) and the fake OpenAI-compatible provider, which
counts the chat requests it gets: a hit must not reach it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from typing import Any

import pytest
import redis.asyncio as redis
from structlog.testing import capture_logs
from support.network import closed_port
from support.provider import chat_requests
from support.runs import (
    for_node,
    of_type,
    output_of,
    run_document,
    single_node_workflow,
    terminal,
)
from support.sources import llm_source

from agentflow_grpc.caching.llm_responses import RedisResponseCache
from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.nodes.registry import NodeRegistry
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.registry import SourceSet
from agentflow_grpc.spec import validate_spec
from agentflow_grpc.testing import CHAT_PATH, FakeProviderServer

TENANT = "tenant-a"
HOUR = 3600


def cached_workflow(
    config: dict[str, Any] | None = None, *, ttl: float | None = HOUR
) -> dict[str, Any]:
    """input `question` → llm `ask` (prompt from the input; cached for `ttl` s unless None)."""
    node_config: dict[str, Any] = {"prompt": "Answer: {{ inputs.question }}", **(config or {})}
    if ttl is not None:
        node_config["cache"] = {"ttl": ttl}
    return single_node_workflow(
        {"id": "ask", "type": "llm", "source": "llm", "config": node_config},
        name="llm-cache-test",
        inputs={"question": {"type": "string"}},
    )


def completed(events: list[ExecutionEvent], node_id: str = "ask") -> dict[str, Any]:
    """The data of the node's one node_completed event."""
    [event] = of_type(for_node(events, node_id), EventType.NODE_COMPLETED)
    return event.data


def node_tokens(events: list[ExecutionEvent], node_id: str = "ask") -> list[str]:
    return [
        event.data["text"] for event in of_type(for_node(events, node_id), EventType.NODE_TOKEN)
    ]


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}:llmcache"


@pytest.fixture
def client(valkey: redis.Redis) -> redis.Redis:
    return valkey


@pytest.fixture
def cached_engine(client: redis.Redis, prefix: str) -> ExecutionEngine:
    metrics = Metrics()
    return ExecutionEngine(
        metrics=metrics,
        registry=NodeRegistry(),
        node_timeout=30,
        execution_timeout=60,
        response_cache=RedisResponseCache(
            client, keys=RedisKeys(prefix.removesuffix(":llmcache")), metrics=metrics
        ),
    )


@pytest.fixture
def llm(provider: FakeProviderServer) -> SourceDefinition:
    return llm_source("llm", "openai", provider.url)


async def run(
    engine: ExecutionEngine,
    document: dict[str, Any],
    sources: list[SourceDefinition],
    question: str = "What is 2 + 2?",
    *,
    namespace: str | None = TENANT,
) -> list[ExecutionEvent]:
    """Run `document` once with the run's cache namespace `namespace`; its events."""
    source_set = SourceSet(sources)
    try:
        result = validate_spec(document, sources=source_set.types_by_name())
        assert result.ok, result.violations
        assert result.spec is not None
        events = [
            event
            async for event in engine.execute(
                result.spec,
                {"question": question},
                sources=source_set,
                cache_namespace=namespace,
            )
        ]
    finally:
        await source_set.aclose()
    terminal(events)
    return events


async def stored_keys(client: redis.Redis, prefix: str) -> list[str]:
    return sorted([key.decode() async for key in client.scan_iter(match=f"{prefix}:*")])


# --- hits ---


async def test_second_run_with_the_same_prompt_is_a_hit(
    cached_engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    document = cached_workflow()

    first = await run(cached_engine, document, [llm])
    second = await run(cached_engine, document, [llm])

    assert chat_requests(provider) == 1
    assert completed(first)["cache"] == "miss"
    assert completed(second)["cache"] == "hit"
    assert output_of(second) == output_of(first) == {"text": "Echo: Answer: What is 2 + 2?"}
    spent = completed(first)["usage"]
    assert spent["total_tokens"] > 0
    assert "cached_tokens" not in spent
    saved = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert completed(second)["usage"] == {**saved, "cached_tokens": spent["total_tokens"]}
    assert terminal(second).data["usage"] == {**saved, "cached_tokens": spent["total_tokens"]}
    # A streaming node still streams: the cached text, in one piece.
    assert node_tokens(second) == ["Echo: Answer: What is 2 + 2?"]
    assert "".join(node_tokens(first)) == node_tokens(second)[0]


async def test_a_hit_is_kept_under_the_namespace_with_the_ttl_and_no_secret(
    cached_engine: ExecutionEngine, client: redis.Redis, prefix: str, llm: SourceDefinition
) -> None:
    await run(cached_engine, cached_workflow(ttl=HOUR), [llm])

    [key] = await stored_keys(client, prefix)
    namespace, _, digest = key.removeprefix(f"{prefix}:").rpartition(":")
    assert namespace == TENANT
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")
    assert HOUR * 1000 - 60_000 < await client.pttl(key) <= HOUR * 1000
    value = json.loads(await client.get(key))
    assert value["text"] == "Echo: Answer: What is 2 + 2?"
    assert value["usage"]["total_tokens"] > 0
    assert "sk-test" not in key
    assert "sk-test" not in json.dumps(value)


async def test_json_output_is_served_parsed_from_the_cache(
    cached_engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["answer", "score"],
    }
    document = cached_workflow({"response_format": "json", "output_schema": schema})

    first = await run(cached_engine, document, [llm])
    second = await run(cached_engine, document, [llm])

    assert chat_requests(provider) == 1
    assert completed(second)["cache"] == "hit"
    assert output_of(second) == output_of(first) == {"answer": "text", "score": 1}


async def test_a_hit_without_streaming_emits_no_tokens(
    cached_engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    document = cached_workflow({"stream": False})

    await run(cached_engine, document, [llm])
    second = await run(cached_engine, document, [llm])

    assert chat_requests(provider) == 1
    assert completed(second)["cache"] == "hit"
    assert node_tokens(second) == []


async def test_another_api_key_for_the_same_provider_is_a_hit(
    cached_engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    """The key is the request, not the credentials: a rotated API key still hits."""
    rotated = SourceDefinition(
        name=llm.name, type=llm.type, config=llm.config, secrets={"api_key": "sk-rotated"}
    )

    await run(cached_engine, cached_workflow(), [llm])
    second = await run(cached_engine, cached_workflow(), [rotated])

    assert chat_requests(provider) == 1
    assert completed(second)["cache"] == "hit"


async def test_summarize_aggregator_with_cache_is_a_hit_the_second_time(
    cached_engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    """Two llm branches (not cached) joined by a `summarize` aggregator that is."""

    def branch(node_id: str) -> dict[str, Any]:
        prompt = f"{node_id}: {{{{ inputs.question }}}}"
        return {"id": node_id, "type": "llm", "source": "llm", "config": {"prompt": prompt}}

    document = {
        "api_version": "agentflow/v1",
        "name": "summary-cache",
        "inputs": {"question": {"type": "string"}},
        "outputs": {"result": {"from": "nodes.merge.output"}},
        "nodes": [
            {"id": "start", "type": "input"},
            branch("left"),
            branch("right"),
            {
                "id": "merge",
                "type": "aggregator",
                "source": "llm",
                "config": {"strategy": "summarize", "cache": {"ttl": 60}},
            },
        ],
        "edges": [
            {"from": "start", "to": "left"},
            {"from": "start", "to": "right"},
            {"from": "left", "to": "merge"},
            {"from": "right", "to": "merge"},
        ],
    }

    first = await run(cached_engine, document, [llm])
    second = await run(cached_engine, document, [llm])

    assert chat_requests(provider) == 3 + 2  # the branches are not cached; the summary is
    assert completed(first, "merge")["cache"] == "miss"
    assert completed(second, "merge")["cache"] == "hit"
    assert "cache" not in completed(second, "left")
    assert output_of(second) == output_of(first)


# --- misses ---


def _other_prompt(document: dict[str, Any]) -> None:
    document["nodes"][1]["config"]["prompt"] = "Reply: {{ inputs.question }}"


def _other_model(document: dict[str, Any]) -> None:
    document["nodes"][1]["config"]["model"] = "other-model"


def _other_temperature(document: dict[str, Any]) -> None:
    document["nodes"][1]["config"]["temperature"] = 0.9


def _other_system(document: dict[str, Any]) -> None:
    document["nodes"][1]["config"]["system"] = "Be brief."


def _other_max_tokens(document: dict[str, Any]) -> None:
    document["nodes"][1]["config"]["max_tokens"] = 50


def _json_mode(document: dict[str, Any]) -> None:
    document["nodes"][1]["config"]["response_format"] = "json"


@pytest.mark.parametrize(
    "change",
    [_other_prompt, _other_model, _other_temperature, _other_system, _other_max_tokens, _json_mode],
)
async def test_a_different_request_is_a_miss(
    cached_engine: ExecutionEngine,
    provider: FakeProviderServer,
    llm: SourceDefinition,
    change: Any,
) -> None:
    document = cached_workflow({"temperature": 0.2})
    changed = copy.deepcopy(document)
    change(changed)

    await run(cached_engine, document, [llm])
    second = await run(cached_engine, changed, [llm])
    third = await run(cached_engine, changed, [llm])

    assert chat_requests(provider) == 2
    assert completed(second)["cache"] == "miss"
    assert completed(third)["cache"] == "hit"


async def test_a_different_rendered_input_is_a_miss(
    cached_engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    document = cached_workflow()

    await run(cached_engine, document, [llm], "What is 2 + 2?")
    second = await run(cached_engine, document, [llm], "What is 3 + 3?")

    assert chat_requests(provider) == 2
    assert completed(second)["cache"] == "miss"
    assert output_of(second) == {"text": "Echo: Answer: What is 3 + 3?"}


async def test_another_tenant_namespace_is_a_miss(
    cached_engine: ExecutionEngine,
    provider: FakeProviderServer,
    client: redis.Redis,
    prefix: str,
    llm: SourceDefinition,
) -> None:
    document = cached_workflow()

    await run(cached_engine, document, [llm], namespace="tenant-a")
    other = await run(cached_engine, document, [llm], namespace="tenant-b")
    again = await run(cached_engine, document, [llm], namespace="tenant-b")

    assert chat_requests(provider) == 2
    assert completed(other)["cache"] == "miss"
    assert completed(again)["cache"] == "hit"
    keys = await stored_keys(client, prefix)
    assert [key.split(":")[-2] for key in keys] == ["tenant-a", "tenant-b"]
    assert keys[0].split(":")[-1] != keys[1].split(":")[-1]  # the namespace is hashed in too


async def test_another_provider_type_or_base_url_is_a_miss(
    cached_engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    as_anthropic = llm_source("llm", "anthropic", provider.url)
    other_url = llm_source("llm", "openai", provider.url)
    other_url.config["base_url"] += "/"  # the same server, by another URL

    await run(cached_engine, cached_workflow(), [llm])
    by_type = await run(cached_engine, cached_workflow(), [as_anthropic])
    by_url = await run(cached_engine, cached_workflow(), [other_url])

    assert chat_requests(provider) == 3
    assert completed(by_type)["cache"] == completed(by_url)["cache"] == "miss"


# --- expiry ---


async def test_a_reply_expires_after_its_ttl(
    cached_engine: ExecutionEngine,
    provider: FakeProviderServer,
    client: redis.Redis,
    prefix: str,
    llm: SourceDefinition,
) -> None:
    document = cached_workflow(ttl=0.4)

    await run(cached_engine, document, [llm])
    [key] = await stored_keys(client, prefix)
    assert 0 < await client.pttl(key) <= 400
    for _ in range(100):  # at most 5 s
        if not await client.exists(key):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the cached reply outlived its TTL")
    after = await run(cached_engine, document, [llm])

    assert chat_requests(provider) == 2
    assert completed(after)["cache"] == "miss"


# --- never cached ---


async def test_without_cache_in_the_spec_nothing_is_cached(
    cached_engine: ExecutionEngine,
    provider: FakeProviderServer,
    client: redis.Redis,
    prefix: str,
    llm: SourceDefinition,
) -> None:
    document = cached_workflow(ttl=None)

    first = await run(cached_engine, document, [llm])
    second = await run(cached_engine, document, [llm])

    assert chat_requests(provider) == 2
    assert "cache" not in completed(first)
    assert "cache" not in completed(second)
    assert "cached_tokens" not in completed(second)["usage"]
    assert await stored_keys(client, prefix) == []


async def test_a_run_without_a_namespace_caches_nothing(
    cached_engine: ExecutionEngine,
    provider: FakeProviderServer,
    client: redis.Redis,
    prefix: str,
    llm: SourceDefinition,
) -> None:
    document = cached_workflow()

    await run(cached_engine, document, [llm], namespace=None)
    second = await run(cached_engine, document, [llm], namespace=None)

    assert chat_requests(provider) == 2
    assert "cache" not in completed(second)
    assert await stored_keys(client, prefix) == []


async def test_an_engine_without_a_cache_caches_nothing(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    await run(engine, cached_workflow(), [llm])
    second = await run(engine, cached_workflow(), [llm])

    assert chat_requests(provider) == 2
    assert "cache" not in completed(second)


async def test_a_failed_provider_call_is_not_kept(
    cached_engine: ExecutionEngine,
    provider: FakeProviderServer,
    client: redis.Redis,
    prefix: str,
    llm: SourceDefinition,
) -> None:
    provider.add_rule(path=CHAT_PATH, status=400, message="bad request", times=1)
    document = cached_workflow()

    failed = await run(cached_engine, document, [llm])
    assert terminal(failed).type is EventType.EXECUTION_FAILED
    assert await stored_keys(client, prefix) == []
    retried = await run(cached_engine, document, [llm])

    assert chat_requests(provider) == 2
    assert completed(retried)["cache"] == "miss"
    assert len(await stored_keys(client, prefix)) == 1


async def test_a_reply_the_node_rejects_is_not_kept(
    cached_engine: ExecutionEngine,
    provider: FakeProviderServer,
    client: redis.Redis,
    prefix: str,
    llm: SourceDefinition,
) -> None:
    """The call succeeded but the node failed (not JSON): a retry must ask the provider again."""
    provider.add_rule(path=CHAT_PATH, reply="not json at all", times=1)
    document = cached_workflow({"response_format": "json"})

    failed = await run(cached_engine, document, [llm])
    assert terminal(failed).data["error"]["code"] == "llm.invalid_json"
    assert await stored_keys(client, prefix) == []
    second = await run(cached_engine, document, [llm])

    assert chat_requests(provider) == 2
    assert completed(second)["cache"] == "miss"
    assert output_of(second) == {"echo": "Answer: What is 2 + 2?"}


async def test_a_stream_cut_short_by_the_node_timeout_is_not_kept(
    cached_engine: ExecutionEngine,
    provider: FakeProviderServer,
    client: redis.Redis,
    prefix: str,
    llm: SourceDefinition,
) -> None:
    provider.add_rule(path=CHAT_PATH, chunk_delay=0.2, times=1)
    document = cached_workflow()
    document["nodes"][1]["timeout"] = 0.5

    failed = await run(cached_engine, document, [llm])

    assert terminal(failed).data["error"]["code"] == "node.deadline_exceeded"
    assert node_tokens(failed)  # part of the reply had streamed
    assert await stored_keys(client, prefix) == []


# --- Redis trouble never fails a node ---


async def test_with_redis_down_the_node_still_completes_through_the_provider(
    provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    down = redis.Redis.from_url(f"redis://127.0.0.1:{closed_port()}", socket_connect_timeout=1)
    metrics = Metrics()
    engine = ExecutionEngine(
        metrics=metrics,
        registry=NodeRegistry(),
        node_timeout=30,
        execution_timeout=60,
        response_cache=RedisResponseCache(down, keys=RedisKeys("af"), metrics=metrics, pause=0),
    )
    try:
        with capture_logs() as logs:
            first = await run(engine, cached_workflow(), [llm])
            second = await run(engine, cached_workflow(), [llm])
    finally:
        await down.aclose()

    assert output_of(first) == output_of(second) == {"text": "Echo: Answer: What is 2 + 2?"}
    assert completed(first)["cache"] == completed(second)["cache"] == "miss"
    assert chat_requests(provider) == 2
    warnings = [log for log in logs if log["event"] == "llm_cache.unavailable"]
    assert [w["operation"] for w in warnings] == ["get", "put", "get", "put"]
    assert all(w["log_level"] == "warning" and w["node_id"] == "ask" for w in warnings)


async def test_after_a_redis_failure_the_cache_is_not_asked_during_its_pause(
    provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    down = redis.Redis.from_url(f"redis://127.0.0.1:{closed_port()}", socket_connect_timeout=1)
    metrics = Metrics()
    cache = RedisResponseCache(down, keys=RedisKeys("af"), metrics=metrics, pause=60)
    engine = ExecutionEngine(metrics=metrics, registry=NodeRegistry(), response_cache=cache)
    try:
        with capture_logs() as logs:
            await run(engine, cached_workflow(), [llm])
    finally:
        await down.aclose()

    errors = [log["error"] for log in logs if log["event"] == "llm_cache.unavailable"]
    assert errors[0].startswith("ConnectionError")
    assert errors[1].startswith("CacheUnavailableError")  # the put did not try Redis


async def test_a_corrupt_entry_is_a_miss_and_is_replaced(
    cached_engine: ExecutionEngine,
    provider: FakeProviderServer,
    client: redis.Redis,
    prefix: str,
    llm: SourceDefinition,
) -> None:
    document = cached_workflow()
    await run(cached_engine, document, [llm])
    [key] = await stored_keys(client, prefix)
    await client.set(key, b"\xff not json", px=60_000)

    second = await run(cached_engine, document, [llm])
    third = await run(cached_engine, document, [llm])

    assert completed(second)["cache"] == "miss"
    assert completed(third)["cache"] == "hit"
    assert chat_requests(provider) == 2


async def test_an_empty_namespace_is_refused(
    cached_engine: ExecutionEngine, llm: SourceDefinition
) -> None:
    sources = SourceSet([llm])
    try:
        result = validate_spec(cached_workflow())
        assert result.spec is not None
        with pytest.raises(ValueError, match="cache_namespace"):
            cached_engine.start(result.spec, {"question": "x"}, sources=sources, cache_namespace="")
    finally:
        await sources.aclose()


async def test_run_document_helper_still_runs_cached_specs_without_caching(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    """A spec with `cache` runs anywhere (the CLI has no Redis): caching is simply off."""
    events = await run_document(engine, cached_workflow(), [llm], {"question": "hi"})

    assert output_of(events) == {"text": "Echo: Answer: hi"}
    assert "cache" not in completed(events)

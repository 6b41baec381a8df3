"""Tokens by model: the terminal event's `models` (engine/model_usage.py), summed per provider
and model from the run's node_completed events, for completed, failed and cancelled runs; a
response-cache hit's saved tokens count for the model that made the kept reply.

The first tests feed `ModelUsage` events' data directly; the others run real workflows on the
fake OpenAI-compatible provider (and the session's Valkey for the response cache).
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
import redis.asyncio as redis
from support.provider import SLOW
from support.runs import collect, for_node, of_type, terminal, validated

from agentflow_grpc.caching.llm_responses import RedisResponseCache
from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.engine.model_usage import ModelUsage
from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.nodes.registry import NodeRegistry
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.registry import SourceSet
from agentflow_grpc.testing import FakeProviderServer

OPENAI = {"provider": "openai", "name": "gpt-4o-mini"}


def usage(prompt: int, completion: int, cached: int = 0) -> dict[str, int]:
    data = {"prompt_tokens": prompt, "completion_tokens": completion}
    data["total_tokens"] = prompt + completion
    if cached:
        data["cached_tokens"] = cached
    return data


def entry(provider: str, model: str, calls: int, i: int, o: int, c: int = 0) -> dict[str, Any]:
    return {
        "provider": provider,
        "model": model,
        "calls": calls,
        "input_tokens": i,
        "output_tokens": o,
        "cached_tokens": c,
    }


# --- the tally ---


def test_calls_and_tokens_are_summed_per_provider_and_model() -> None:
    tally = ModelUsage()
    tally.add({"usage": usage(10, 2), "model": OPENAI})
    tally.add({"usage": usage(7, 3), "model": OPENAI, "cache": "miss"})
    tally.add({"usage": usage(5, 1), "model": {"provider": "anthropic", "name": "claude-x"}})
    tally.add(
        {"usage": usage(4, 4), "model": {"provider": "azure.ai.openai", "name": "gpt-4o-mini"}}
    )

    assert tally.to_list() == [
        entry("anthropic", "claude-x", 1, 5, 1),
        entry("azure.ai.openai", "gpt-4o-mini", 1, 4, 4),
        entry("openai", "gpt-4o-mini", 2, 17, 5),
    ]


def test_a_cache_hit_is_no_call_and_its_saved_tokens_go_to_the_model_that_made_the_reply() -> None:
    tally = ModelUsage()
    tally.add({"usage": usage(10, 2), "model": OPENAI, "cache": "miss"})
    tally.add({"usage": usage(0, 0, cached=12), "model": OPENAI, "cache": "hit"})
    # An entry kept before the cache recorded its model: its saved tokens are nobody's.
    tally.add({"usage": usage(0, 0, cached=30), "cache": "hit"})

    assert tally.to_list() == [
        entry("", "", 0, 0, 0, 30),
        entry("openai", "gpt-4o-mini", 1, 10, 2, 12),
    ]


def test_prompt_cache_tokens_are_summed_per_model_and_left_out_while_zero() -> None:
    tally = ModelUsage()
    read = {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10, "cache_read_tokens": 6}
    written = {**usage(5, 1), "cache_write_tokens": 4}
    tally.add({"usage": read, "model": OPENAI})
    tally.add({"usage": written, "model": OPENAI})
    tally.add({"usage": usage(2, 2), "model": {"provider": "anthropic", "name": "claude-x"}})
    assert tally.to_list() == [
        entry("anthropic", "claude-x", 1, 2, 2),
        entry("openai", "gpt-4o-mini", 2, 14, 2)
        | {"cache_read_tokens": 6, "cache_write_tokens": 4},
    ]


def test_usage_without_a_model_counts_under_no_name_and_events_without_either_are_ignored() -> None:
    tally = ModelUsage()
    tally.add({"output": {"n": 1}, "duration_ms": 1.0})  # an input or http node
    tally.add({"usage": usage(0, 0)})  # a plugin reporting nothing spent
    assert tally.to_list() == []
    tally.add({"usage": usage(3, 4)})  # a plugin's tokens
    tally.add({"model": OPENAI})  # a provider that reported no usage: still a call
    assert tally.to_list() == [entry("", "", 1, 3, 4), entry("openai", "gpt-4o-mini", 1, 0, 0)]


# --- runs on the fake provider ---


def llm(node_id: str, source: str, prompt: str, **config: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "llm",
        "source": source,
        "config": {"prompt": prompt, **config},
    }


def chain(*nodes: dict[str, Any]) -> dict[str, Any]:
    """input `start` → the nodes in a line; output `last` is the last node's text."""
    ids = ["start", *(node["id"] for node in nodes)]
    return {
        "api_version": "agentflow/v1",
        "name": "model-usage",
        "inputs": {"question": {"type": "string"}},
        "outputs": {"last": {"from": f"nodes.{ids[-1]}.output.text"}},
        "nodes": [{"id": "start", "type": "input"}, *nodes],
        "edges": [{"from": a, "to": b} for a, b in itertools.pairwise(ids)],
    }


def source(name: str, source_type: str, url: str, model: str) -> SourceDefinition:
    return SourceDefinition(
        name=name,
        type=source_type,
        config={"base_url": f"{url}/v1" if source_type == "openai" else url, "model": model},
        secrets={"api_key": "sk-test"},
    )


@pytest.fixture
def sources(provider: FakeProviderServer) -> list[SourceDefinition]:
    return [
        source("gpt", "openai", provider.url, "gpt-4o-mini"),
        source("claude", "anthropic", provider.url, "claude-3-5-haiku-latest"),
    ]


async def run(
    engine: ExecutionEngine,
    document: dict[str, Any],
    definitions: list[SourceDefinition],
    *,
    cancel_after: str | None = None,
    namespace: str | None = None,
) -> list[ExecutionEvent]:
    """Run `document`; with `cancel_after`, cancel the run once that node has completed."""
    source_set = SourceSet(definitions)
    try:
        spec = validated(document, source_set)
        execution = engine.start(
            spec, {"question": "why?"}, sources=source_set, cache_namespace=namespace
        )
        events: list[ExecutionEvent] = []
        async for event in execution.events():
            events.append(event)
            if event.type is EventType.NODE_COMPLETED and event.node_id == cancel_after:
                execution.cancel("enough")
        return events
    finally:
        await source_set.aclose()


def spent(events: list[ExecutionEvent], node_id: str) -> dict[str, int]:
    (event,) = of_type(for_node(events, node_id), EventType.NODE_COMPLETED)
    data: dict[str, int] = event.data["usage"]
    return data


async def test_a_completed_run_reports_its_tokens_by_model(
    engine: ExecutionEngine, sources: list[SourceDefinition]
) -> None:
    document = chain(
        llm("one", "gpt", "First {{ inputs.question }}"),
        llm("two", "claude", "Second {{ nodes.one.output.text }}"),
        llm("three", "gpt", "Third {{ nodes.two.output.text }}"),
    )
    events = await run(engine, document, sources)

    end = terminal(events)
    assert end.type is EventType.EXECUTION_COMPLETED
    one, two, three = spent(events, "one"), spent(events, "two"), spent(events, "three")
    assert end.data["models"] == [
        entry(
            "anthropic",
            "claude-3-5-haiku-latest",
            1,
            two["prompt_tokens"],
            two["completion_tokens"],
        ),
        entry(
            "openai",
            "gpt-4o-mini",
            2,
            one["prompt_tokens"] + three["prompt_tokens"],
            one["completion_tokens"] + three["completion_tokens"],
        ),
    ]
    # The models add up to the run's usage.
    models = end.data["models"]
    assert sum(m["input_tokens"] for m in models) == end.data["usage"]["prompt_tokens"]
    assert sum(m["output_tokens"] for m in models) == end.data["usage"]["completion_tokens"]


async def test_a_failed_run_reports_the_tokens_of_the_attempts_that_completed(
    engine: ExecutionEngine, sources: list[SourceDefinition], provider: FakeProviderServer
) -> None:
    provider.add_rule(contains="[refuse]", status=400, message="no")
    document = chain(
        llm("one", "gpt", "First {{ inputs.question }}"),
        llm("two", "claude", "[refuse] {{ nodes.one.output.text }}"),
    )
    events = await run(engine, document, sources)

    end = terminal(events)
    assert end.type is EventType.EXECUTION_FAILED
    one = spent(events, "one")
    assert end.data["models"] == [
        entry("openai", "gpt-4o-mini", 1, one["prompt_tokens"], one["completion_tokens"])
    ]


async def test_a_cancelled_run_reports_the_tokens_spent_before_it_was_cancelled(
    engine: ExecutionEngine, sources: list[SourceDefinition], provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=30)
    document = chain(
        llm("one", "claude", "First {{ inputs.question }}"),
        llm("two", "gpt", SLOW + " {{ nodes.one.output.text }}"),
    )
    events = await run(engine, document, sources, cancel_after="one")

    end = terminal(events)
    assert end.type is EventType.EXECUTION_CANCELLED
    assert end.data["interrupted_nodes"] == ["two"]
    one = spent(events, "one")
    assert end.data["models"] == [
        entry(
            "anthropic",
            "claude-3-5-haiku-latest",
            1,
            one["prompt_tokens"],
            one["completion_tokens"],
        )
    ]


async def test_a_run_without_model_calls_has_no_models(engine: ExecutionEngine) -> None:
    document = {
        "api_version": "agentflow/v1",
        "name": "no-models",
        "inputs": {"question": {"type": "string"}},
        "outputs": {"q": {"from": "nodes.start.output.question"}},
        "nodes": [{"id": "start", "type": "input"}],
        "edges": [],
    }
    events = await collect(
        engine.execute(validated(document, None), {"question": "x"}, sources=SourceSet([]))
    )
    assert terminal(events).type is EventType.EXECUTION_COMPLETED
    assert "models" not in terminal(events).data


async def test_a_cache_hit_counts_its_saved_tokens_for_the_model_that_made_the_reply(
    valkey: redis.Redis, sources: list[SourceDefinition], provider: FakeProviderServer
) -> None:
    metrics = Metrics()
    engine = ExecutionEngine(
        metrics=metrics,
        registry=NodeRegistry(),
        node_timeout=30,
        execution_timeout=60,
        response_cache=RedisResponseCache(
            valkey, keys=RedisKeys(f"test-{uuid.uuid4().hex[:12]}"), metrics=metrics
        ),
    )
    document = chain(llm("ask", "gpt", "Cached {{ inputs.question }}", cache={"ttl": 600}))

    first = await run(engine, document, sources, namespace="tenant-a")
    second = await run(engine, document, sources, namespace="tenant-a")

    made = spent(first, "ask")
    assert terminal(first).data["models"] == [
        entry("openai", "gpt-4o-mini", 1, made["prompt_tokens"], made["completion_tokens"])
    ]
    (hit,) = of_type(for_node(second, "ask"), EventType.NODE_COMPLETED)
    assert hit.data["cache"] == "hit"
    assert hit.data["model"] == OPENAI  # from the cache entry
    assert "provider_ms" not in hit.data  # no provider call was made
    assert terminal(second).data["models"] == [
        entry("openai", "gpt-4o-mini", 0, 0, 0, made["total_tokens"])
    ]


async def test_a_call_that_read_the_prompt_cache_says_so_in_its_usage_and_the_run_s_models(
    engine: ExecutionEngine, sources: list[SourceDefinition], provider: FakeProviderServer
) -> None:
    provider.add_rule(cache_read_tokens=2, times=1)
    events = await run(engine, chain(llm("one", "gpt", "First {{ inputs.question }}")), sources)

    one = spent(events, "one")
    assert one["cache_read_tokens"] == 2
    assert "cache_write_tokens" not in one
    end = terminal(events)
    (model,) = end.data["models"]
    assert model["cache_read_tokens"] == 2
    assert end.data["usage"]["cache_read_tokens"] == 2

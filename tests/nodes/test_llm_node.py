"""The llm node end to end: what reaches the provider, streaming, JSON output, errors, retries.

Calls go through the real `openai` SDK to the fake OpenAI-compatible provider; the tests look at
the requests it recorded, the node outputs and the run's events.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.retries import FAST_RETRY
from support.runs import (
    error_of,
    failures,
    for_node,
    of_type,
    output_of,
    run_document,
    single_node_workflow,
    started_attempts,
    terminal,
)
from support.sources import llm_source

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.testing import CHAT_PATH, FakeProviderServer

PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "score": {"type": "integer", "minimum": 3},
    },
    "required": ["name", "score"],
    "additionalProperties": False,
}


def workflow(
    config: dict[str, Any],
    *,
    inputs: dict[str, Any] | None = None,
    source: str = "llm",
    **node: Any,
) -> dict[str, Any]:
    """input → one llm node `ask` → output `result` (the node's whole output)."""
    return single_node_workflow(
        {"id": "ask", "type": "llm", "source": source, "config": config, **node},
        name="llm-node-test",
        inputs=inputs,
    )


def tokens(events: list[ExecutionEvent], attempt: int = 1) -> list[str]:
    return [
        event.data["text"]
        for event in of_type(events, EventType.NODE_TOKEN)
        if event.attempt == attempt
    ]


def chat_bodies(provider: FakeProviderServer) -> list[dict[str, Any]]:
    return [request.body for request in provider.requests if request.path == CHAT_PATH]


@pytest.fixture
def llm(provider: FakeProviderServer) -> SourceDefinition:
    return llm_source("llm", "openai", provider.url)


# --- streaming ---


async def test_streamed_tokens_concatenate_to_the_output_text(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    document = workflow(
        {"prompt": "Say hello to {{ inputs.name }} and the whole team"},
        inputs={"name": {"type": "string"}},
    )
    events = await run_document(engine, document, [llm], {"name": "Ada"})

    text = output_of(events)["text"]
    assert text == "Echo: Say hello to Ada and the whole team"
    streamed = tokens(events)
    assert len(streamed) > 1
    assert "".join(streamed) == text
    token_events = of_type(events, EventType.NODE_TOKEN)
    assert {(event.node_id, event.attempt) for event in token_events} == {("ask", 1)}
    node_events = [event.type for event in for_node(events, "ask")]
    assert node_events[0] is EventType.NODE_STARTED
    assert node_events[-1] is EventType.NODE_COMPLETED
    assert set(node_events[1:-1]) == {EventType.NODE_TOKEN}
    (body,) = chat_bodies(provider)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_stream_false_gives_no_token_events(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    events = await run_document(engine, workflow({"prompt": "quietly", "stream": False}), [llm])

    assert output_of(events) == {"text": "Echo: quietly"}
    assert of_type(events, EventType.NODE_TOKEN) == []
    (body,) = chat_bodies(provider)
    assert not body.get("stream")


async def test_tokens_of_an_attempt_that_timed_out_keep_their_attempt_number(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    long_reply = " ".join(f"word{index}" for index in range(200))
    provider.add_rule(contains="story", reply=long_reply, chunk_delay=0.05, times=1)
    document = workflow({"prompt": "tell a story"}, timeout=1.0, retry=FAST_RETRY)
    events = await run_document(engine, document, [llm])

    assert started_attempts(events, "ask") == [1, 2]
    assert failures(events, "ask") == [("node.deadline_exceeded", True)]
    first = "".join(tokens(events, attempt=1))
    assert first
    assert long_reply.startswith(first)
    assert first != long_reply
    assert "".join(tokens(events, attempt=2)) == output_of(events)["text"] == "Echo: tell a story"


# --- what reaches the provider ---


async def test_system_prompt_and_sampling_settings_reach_the_provider(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    config = {
        "system": "You answer in {{ inputs.language }}.",
        "prompt": "Describe {{ inputs.topic }}.",
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
    }
    inputs = {"language": {"type": "string"}, "topic": {"type": "string"}}
    events = await run_document(
        engine, workflow(config, inputs=inputs), [llm], {"language": "German", "topic": "tea"}
    )

    assert output_of(events) == {"text": "Echo: Describe tea."}
    (request,) = provider.requests
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["messages"] == [
        {"role": "system", "content": "You answer in German."},
        {"role": "user", "content": "Describe tea."},
    ]
    assert request.body["model"] == "fake-model"  # the source's default model
    assert request.body["temperature"] == 0.2
    assert request.body["top_p"] == 0.9
    assert request.body["max_tokens"] == 50
    assert "response_format" not in request.body


async def test_messages_reach_the_provider_in_order_after_the_system_message(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    config = {
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "My name is {{ inputs.name }}."},
            {"role": "assistant", "content": "Hello {{ inputs.name }}!"},
            {"role": "user", "content": "What is my name?"},
        ],
        "temperature": 0,
    }
    events = await run_document(
        engine, workflow(config, inputs={"name": {"type": "string"}}), [llm], {"name": "Ada"}
    )

    assert output_of(events) == {"text": "Echo: What is my name?"}
    (body,) = chat_bodies(provider)
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada!"},
        {"role": "user", "content": "What is my name?"},
    ]
    assert body["temperature"] == 0
    assert "max_tokens" not in body


async def test_a_node_model_wins_over_the_source_default(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    provider.add_rule(model="gpt-special", reply="from the special model")
    events = await run_document(engine, workflow({"prompt": "hi", "model": "gpt-special"}), [llm])

    assert output_of(events) == {"text": "from the special model"}
    assert [body["model"] for body in chat_bodies(provider)] == ["gpt-special"]


async def test_source_organization_and_default_headers_reach_the_provider(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    source = SourceDefinition(
        name="llm",
        type="openai",
        config={
            "base_url": f"{provider.url}/v1",
            "model": "fake-model",
            "organization": "org-42",
            "default_headers": {"User-Agent": "agentflow-tests"},
        },
        secrets={"api_key": "sk-test"},
    )
    events = await run_document(engine, workflow({"prompt": "hi"}), [source])

    assert output_of(events) == {"text": "Echo: hi"}
    (request,) = provider.requests
    assert request.headers["openai-organization"] == "org-42"
    assert request.headers["user-agent"] == "agentflow-tests"


async def test_without_a_model_on_node_or_source_the_node_fails(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    source = SourceDefinition(
        name="llm",
        type="openai",
        config={"base_url": f"{provider.url}/v1"},
        secrets={"api_key": "sk-test"},
    )
    events = await run_document(engine, workflow({"prompt": "hi"}, retry=FAST_RETRY), [source])

    assert error_of(events)["code"] == "source.no_model"
    assert started_attempts(events, "ask") == [1]
    assert provider.requests == []


async def test_an_openai_source_calls_the_chat_completions_endpoint(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    source = llm_source("llm", "openai", provider.url)
    document = workflow({"prompt": "ping", "model": "openai-model", "max_tokens": 10})
    events = await run_document(engine, document, [source])

    assert output_of(events) == {"text": "Echo: ping"}
    (request,) = provider.requests
    assert request.path == CHAT_PATH
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["model"] == "openai-model"
    assert request.body["messages"] == [{"role": "user", "content": "ping"}]


@pytest.mark.parametrize(
    ("source_type", "path"),
    [
        ("anthropic", "/v1/messages"),
        ("gemini", "/v1beta/models/gemini-model:streamGenerateContent"),
    ],
)
async def test_anthropic_and_gemini_sources_speak_their_own_apis(
    source_type: str, path: str, engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    source = llm_source("llm", source_type, provider.url)
    document = workflow({"prompt": "ping", "model": f"{source_type}-model", "max_tokens": 10})
    events = await run_document(engine, document, [source])

    assert output_of(events) == {"text": "Echo: ping"}
    assert tokens(events)
    (request,) = provider.requests
    assert request.path == path


async def test_azure_openai_calls_the_deployment_of_the_model(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    source = SourceDefinition(
        name="llm",
        type="azure_openai",
        config={"azure_endpoint": provider.url, "api_version": "2024-06-01", "model": "gpt-4o"},
        secrets={"api_key": "sk-azure"},
    )
    events = await run_document(engine, workflow({"prompt": "ping"}), [source])

    assert output_of(events) == {"text": "Echo: ping"}
    assert [e.data["text"] for e in of_type(events, EventType.NODE_TOKEN)]
    (request,) = provider.requests
    assert request.method == "POST"
    assert request.path == "/openai/deployments/gpt-4o/chat/completions"
    assert request.body["messages"] == [{"role": "user", "content": "ping"}]
    assert request.headers["api-key"] == "sk-azure"
    assert "authorization" not in request.headers  # Azure sends the key as `api-key`


async def test_azure_openai_without_api_version_is_a_source_config_error(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    source = SourceDefinition(
        name="llm",
        type="azure_openai",
        config={"azure_endpoint": provider.url, "model": "gpt-4o"},
        secrets={"api_key": "sk-azure"},
    )
    events = await run_document(engine, workflow({"prompt": "ping"}, retry=FAST_RETRY), [source])

    error = error_of(events)
    assert error["code"] == "source.invalid_config"
    assert "api_version" in error["message"]
    assert started_attempts(events, "ask") == [1]
    assert provider.requests == []


# --- JSON output ---


async def test_json_output_fits_the_schema_and_is_readable_downstream(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    document = workflow(
        {
            "prompt": "Extract: {{ inputs.text }}",
            "response_format": "json",
            "output_schema": PERSON_SCHEMA,
        },
        inputs={"text": {"type": "string"}},
    )
    document["nodes"].append(
        {
            "id": "use",
            "type": "llm",
            "source": "llm",
            "config": {
                "prompt": "{{ nodes.ask.output.name }} scored {{ nodes.ask.output.score + 1 }}",
                "stream": False,
            },
        }
    )
    document["edges"].append({"from": "ask", "to": "use"})
    document["outputs"] = {
        "person": {"from": "nodes.ask.output"},
        "score": {"from": "nodes.ask.output.score"},
        "reply": {"from": "nodes.use.output.text"},
    }
    events = await run_document(engine, document, [llm], {"text": "Ada, 9 points"})

    assert output_of(events, "person") == {"name": "text", "score": 3}
    assert output_of(events, "score") == 3
    assert output_of(events, "reply") == "Echo: text scored 4"
    first, second = chat_bodies(provider)
    assert first["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": PERSON_SCHEMA},
    }
    assert json.loads("".join(tokens(events))) == {"name": "text", "score": 3}
    assert second["messages"] == [{"role": "user", "content": "text scored 4"}]


async def test_json_without_a_schema_asks_for_a_json_object(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    events = await run_document(
        engine, workflow({"prompt": "hi", "response_format": "json"}), [llm]
    )

    assert output_of(events) == {"echo": "hi"}
    (body,) = chat_bodies(provider)
    assert body["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    "reply",
    [
        '```json\n{"name": "Ada", "score": 7}\n```',
        '```json {"name": "Ada", "score": 7} ```',
        'Here is the JSON:\n```json\n{"name": "Ada", "score": 7}\n```\nAnything else?',
        '```\n{"name": "Ada", "score": 7}',
    ],
    ids=["fenced", "one-line", "with-prose", "unclosed"],
)
async def test_json_in_a_fenced_block_is_parsed(
    reply: str, engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    provider.add_rule(reply=reply)
    config = {"prompt": "hi", "response_format": "json", "output_schema": PERSON_SCHEMA}
    events = await run_document(engine, workflow(config), [llm])

    assert output_of(events) == {"name": "Ada", "score": 7}


async def test_a_reply_that_is_not_json_fails_with_invalid_json(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    provider.add_rule(reply="Sure! Here is the data you asked for.")
    document = workflow({"prompt": "hi", "response_format": "json"}, retry=FAST_RETRY)
    events = await run_document(engine, document, [llm])

    error = error_of(events)
    assert error["code"] == "llm.invalid_json"
    assert error["node_id"] == "ask"
    assert "Sure! Here is the data" in error["message"]
    assert failures(events, "ask") == [("llm.invalid_json", False)]
    assert len(provider.requests) == 1


async def test_json_that_does_not_fit_the_output_schema_fails(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    provider.add_rule(json={"name": "Ada", "score": 1})
    config = {"prompt": "hi", "response_format": "json", "output_schema": PERSON_SCHEMA}
    events = await run_document(engine, workflow(config, retry=FAST_RETRY), [llm])

    error = error_of(events)
    assert error["code"] == "llm.output_schema_mismatch"
    assert "score" in error["message"]
    assert failures(events, "ask") == [("llm.output_schema_mismatch", False)]
    assert of_type(events, EventType.NODE_COMPLETED)[-1].node_id == "start"


# --- provider errors and retries ---


async def test_server_errors_are_retried_until_an_attempt_succeeds(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    provider.add_rule(contains="flaky", status=500, times=2)
    events = await run_document(engine, workflow({"prompt": "flaky call"}, retry=FAST_RETRY), [llm])

    assert output_of(events) == {"text": "Echo: flaky call"}
    assert started_attempts(events, "ask") == [1, 2, 3]
    assert failures(events, "ask") == [
        ("provider.unavailable", True),
        ("provider.unavailable", True),
    ]
    (completed,) = of_type(for_node(events, "ask"), EventType.NODE_COMPLETED)
    assert completed.attempt == 3
    assert {token.attempt for token in of_type(events, EventType.NODE_TOKEN)} == {3}
    assert len(chat_bodies(provider)) == 3


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "provider.rejected"),
        (404, "provider.rejected"),
        (401, "provider.unauthenticated"),
        (403, "provider.unauthenticated"),
    ],
)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
async def test_client_errors_fail_at_once(
    status: int,
    code: str,
    stream: bool,
    engine: ExecutionEngine,
    provider: FakeProviderServer,
    llm: SourceDefinition,
) -> None:
    provider.add_rule(status=status, message="injected trouble")
    events = await run_document(
        engine, workflow({"prompt": "hi", "stream": stream}, retry=FAST_RETRY), [llm]
    )

    error = error_of(events)
    assert error["code"] == code
    assert error["node_id"] == "ask"
    assert f"HTTP {status}" in error["message"]
    assert "injected trouble" in error["message"]
    assert failures(events, "ask") == [(code, False)]
    assert len(provider.requests) == 1


async def test_rate_limits_are_retried(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    provider.add_rule(status=429, times=1)
    events = await run_document(engine, workflow({"prompt": "hi"}, retry=FAST_RETRY), [llm])

    assert output_of(events) == {"text": "Echo: hi"}
    assert failures(events, "ask") == [("provider.rate_limited", True)]
    assert started_attempts(events, "ask") == [1, 2]


@pytest.mark.parametrize("status", [429, 503])
async def test_a_retry_after_from_the_provider_is_waited_before_the_next_attempt(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition, status: int
) -> None:
    provider.add_rule(status=status, retry_after="0.6", times=1)
    events = await run_document(engine, workflow({"prompt": "hi"}, retry=FAST_RETRY), [llm])

    assert output_of(events) == {"text": "Echo: hi"}
    failed = of_type(for_node(events, "ask"), EventType.NODE_FAILED)
    assert [e.data["retry_in"] for e in failed] == [0.6]  # not the 0.01 s backoff
    first, second = (request.time for request in provider.requests)
    assert second - first >= 0.6


async def test_a_retry_after_longer_than_the_node_timeout_waits_the_timeout(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    provider.add_rule(status=429, retry_after="3600", times=1)
    document = workflow({"prompt": "hi"}, timeout=0.5, retry=FAST_RETRY)
    events = await run_document(engine, document, [llm])

    assert output_of(events) == {"text": "Echo: hi"}
    failed = of_type(for_node(events, "ask"), EventType.NODE_FAILED)
    assert [e.data["retry_in"] for e in failed] == [0.5]


async def test_a_rate_limit_that_lasts_fails_after_the_last_attempt(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    provider.add_rule(status=429)
    events = await run_document(engine, workflow({"prompt": "hi"}, retry=FAST_RETRY), [llm])

    error = error_of(events)
    assert error["code"] == "provider.rate_limited"
    assert failures(events, "ask") == [("provider.rate_limited", True)] * 2 + [
        ("provider.rate_limited", False)
    ]
    assert len(provider.requests) == 3


async def test_a_slow_provider_exceeds_the_node_deadline(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    provider.add_rule(delay=2)
    events = await run_document(engine, workflow({"prompt": "hi"}, timeout=0.3), [llm])

    error = error_of(events)
    assert error == {
        "code": "node.deadline_exceeded",
        "message": "the attempt took longer than 0.3 s",
        "node_id": "ask",
    }
    assert failures(events, "ask") == [("node.deadline_exceeded", False)]


async def test_node_deadlines_are_retried_and_every_attempt_is_visible(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    provider.add_rule(delay=2)
    retry = {"max_attempts": 2, "backoff": {"initial": 0.01, "max": 0.02, "jitter": False}}
    events = await run_document(engine, workflow({"prompt": "hi"}, timeout=0.3, retry=retry), [llm])

    assert error_of(events)["code"] == "node.deadline_exceeded"
    assert started_attempts(events, "ask") == [1, 2]
    assert failures(events, "ask") == [
        ("node.deadline_exceeded", True),
        ("node.deadline_exceeded", False),
    ]
    assert len(provider.requests) == 2


async def test_a_source_request_timeout_is_a_retryable_provider_timeout(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    provider.add_rule(delay=2, times=1)
    source = SourceDefinition(
        name="llm",
        type="openai",
        config={"base_url": f"{provider.url}/v1", "model": "fake-model", "timeout": 0.3},
        secrets={"api_key": "sk-test"},
    )
    events = await run_document(engine, workflow({"prompt": "hi"}, retry=FAST_RETRY), [source])

    assert output_of(events) == {"text": "Echo: hi"}
    assert failures(events, "ask") == [("provider.timeout", True)]


async def test_an_unreachable_provider_is_retried_as_unavailable(
    engine: ExecutionEngine, unused_tcp_port: int
) -> None:
    source = llm_source("llm", "openai", f"http://127.0.0.1:{unused_tcp_port}")
    events = await run_document(engine, workflow({"prompt": "hi"}, retry=FAST_RETRY), [source])

    assert error_of(events)["code"] == "provider.unavailable"
    assert [will for _, will in failures(events, "ask")] == [True, True, False]


# --- usage ---


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
async def test_usage_is_reported_per_node_and_summed_for_the_run(
    stream: bool, engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    document = workflow({"prompt": "one two three", "stream": stream})
    document["nodes"].append(
        {
            "id": "again",
            "type": "llm",
            "source": "llm",
            "config": {"system": "four five", "prompt": "{{ nodes.ask.output.text }}"},
        }
    )
    document["edges"].append({"from": "ask", "to": "again"})
    document["outputs"]["again"] = {"from": "nodes.again.output.text"}
    events = await run_document(engine, document, [llm])

    assert output_of(events, "again") == "Echo: Echo: one two three"
    usage = {
        event.node_id: event.data.get("usage")
        for event in of_type(events, EventType.NODE_COMPLETED)
    }
    # the fake counts words: prompt 3, reply "Echo: one two three" 4; then 2 + 4 in, 5 out
    assert usage["ask"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert usage["again"] == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}
    assert usage["start"] is None
    assert terminal(events).data["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 9,
        "total_tokens": 18,
    }


async def test_usage_of_a_failed_run_counts_the_nodes_that_completed(
    engine: ExecutionEngine, provider: FakeProviderServer, llm: SourceDefinition
) -> None:
    provider.add_rule(contains="second", status=400)
    document = workflow({"prompt": "first call"})
    document["nodes"].append(
        {"id": "again", "type": "llm", "source": "llm", "config": {"prompt": "second call"}}
    )
    document["edges"].append({"from": "ask", "to": "again"})
    document["outputs"]["again"] = {"from": "nodes.again.output.text"}
    events = await run_document(engine, document, [llm])

    end = terminal(events)
    assert end.type is EventType.EXECUTION_FAILED
    assert end.data["error"]["node_id"] == "again"
    (completed,) = of_type(for_node(events, "ask"), EventType.NODE_COMPLETED)
    assert end.data["usage"] == completed.data["usage"]
    assert end.data["usage"]["total_tokens"] > 0

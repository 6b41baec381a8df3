"""What each node attempt's event says about its provider calls: `provider_ms` (the calls' time),
`provider_first_token_ms` (a streamed model call) and `model`, for llm, http, database and
image nodes, whether the call succeeds or fails (docs/runtime.md, "Events").

Lower bounds come from deliberate delays (the fake provider's, the CRM API's `/slow`,
`pg_sleep`); the relations between the numbers hold on any machine.
"""

from __future__ import annotations

from typing import Any

from support.crm_api import CrmApi
from support.retries import fast_retry
from support.runs import for_node, of_type, run_document, single_node_workflow
from support.sources import crm_source, llm_source

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.testing import FakeProviderServer


def ended(events: list[ExecutionEvent], node_id: str) -> list[dict[str, Any]]:
    """The data of `node_id`'s node_completed and node_failed events, in order."""
    return [
        event.data
        for event in for_node(events, node_id)
        if event.type in (EventType.NODE_COMPLETED, EventType.NODE_FAILED)
    ]


async def test_a_streamed_llm_call_has_its_first_token_within_its_provider_time_within_the_attempt(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    provider.add_rule(reply="one two three four five", delay=0.15, chunk_delay=0.02)
    document = single_node_workflow(
        {"id": "ask", "type": "llm", "source": "llm", "config": {"prompt": "Hi"}}, name="timing"
    )
    events = await run_document(engine, document, [llm_source("llm", "openai", provider.url)])

    (data,) = ended(events, "ask")
    assert len(of_type(for_node(events, "ask"), EventType.NODE_TOKEN)) > 1  # it did stream
    assert data["provider_first_token_ms"] >= 150  # the provider's delay before answering
    assert data["provider_first_token_ms"] <= data["provider_ms"] <= data["duration_ms"]
    assert data["model"] == {"provider": "openai", "name": "fake-model"}
    (start,) = ended(events, "start")
    assert "provider_ms" not in start  # the input node calls nobody
    assert "model" not in start


async def test_an_llm_call_that_does_not_stream_has_provider_time_and_no_first_token(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    provider.add_rule(reply="whole", delay=0.1)
    node = {
        "id": "ask",
        "type": "llm",
        "source": "llm",
        "config": {"prompt": "Hi", "stream": False},
    }
    document = single_node_workflow(node, name="timing")
    events = await run_document(engine, document, [llm_source("llm", "openai", provider.url)])

    (data,) = ended(events, "ask")
    assert 100 <= data["provider_ms"] <= data["duration_ms"]
    assert "provider_first_token_ms" not in data
    assert data["model"]["name"] == "fake-model"


async def test_a_failed_llm_attempt_keeps_its_provider_time_and_names_no_model(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    provider.add_rule(status=503, delay=0.1, times=1)
    provider.add_rule(reply="fine")
    node = {
        "id": "ask",
        "type": "llm",
        "source": "llm",
        "config": {"prompt": "Hi"},
        "retry": fast_retry(2),
    }
    document = single_node_workflow(node, name="timing")
    events = await run_document(engine, document, [llm_source("llm", "openai", provider.url)])

    first, second = ended(events, "ask")
    assert (first["code"], first["will_retry"]) == ("provider.unavailable", True)
    assert 100 <= first["provider_ms"] <= first["duration_ms"]
    assert "model" not in first
    assert second["provider_ms"] <= second["duration_ms"]
    assert second["model"]["name"] == "fake-model"


async def test_an_http_call_has_its_provider_time_whether_it_answers_or_fails(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, _ = crm_api
    for path, outcome in (("/slow?seconds=0.2", "completed"), ("/status/500", "failed")):
        node = {"id": "call", "type": "http", "source": "crm", "config": {"url": path}}
        document = single_node_workflow(node, name="timing")
        events = await run_document(engine, document, [crm_source(url)])

        (data,) = ended(events, "call")
        assert ("code" in data) == (outcome == "failed"), data
        assert 0 < data["provider_ms"] <= data["duration_ms"]
        assert "provider_first_token_ms" not in data
        assert "model" not in data
        if outcome == "completed":
            assert data["provider_ms"] >= 200  # the API's deliberate delay


async def test_a_database_query_has_its_provider_time(
    engine: ExecutionEngine, warehouse_dsn: str
) -> None:
    node = {
        "id": "query",
        "type": "database",
        "source": "db",
        "config": {"query": "SELECT 1 AS one FROM pg_sleep(0.1)"},
    }
    document = single_node_workflow(node, name="timing")
    db = SourceDefinition(name="db", type="postgres", config={"dsn": warehouse_dsn})
    events = await run_document(engine, document, [db])

    (data,) = ended(events, "query")
    assert data["output"]["rows"] == [{"one": 1}]
    assert 100 <= data["provider_ms"] <= data["duration_ms"]


async def test_an_image_call_has_its_provider_time(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    provider.add_rule(delay=0.1)
    node = {"id": "draw", "type": "image", "source": "images", "config": {"prompt": "A lamp"}}
    document = single_node_workflow(node, name="timing")
    events = await run_document(engine, document, [llm_source("images", "openai", provider.url)])

    (data,) = ended(events, "draw")
    assert 100 <= data["provider_ms"] <= data["duration_ms"]
    assert "provider_first_token_ms" not in data

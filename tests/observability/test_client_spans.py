"""The spans of the calls nodes make, from the engine alone (spans recorded in memory): images,
failed HTTP and database calls, a node's timeout, and statement text only when content is on."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from support.crm_api import CrmApi
from support.runs import error_of, run_document
from support.sources import crm_source, llm_source

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability import spans
from agentflow_grpc.testing import FakeProviderServer


def recording(*, content: bool) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    installed = spans.install(provider, content=content)
    yield exporter
    installed.uninstall()
    provider.shutdown()


@pytest.fixture
def recorded() -> Iterator[InMemorySpanExporter]:
    yield from recording(content=False)


@pytest.fixture
def recorded_with_content() -> Iterator[InMemorySpanExporter]:
    yield from recording(content=True)


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [span for span in exporter.get_finished_spans() if span.name == name]
    assert len(found) == 1, [span.name for span in exporter.get_finished_spans()]
    return found[0]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def spec(*nodes: dict[str, Any]) -> dict[str, Any]:
    ids = ["start", *(node["id"] for node in nodes)]
    return {
        "api_version": "agentflow/v1",
        "name": "calls",
        "outputs": {"last": {"from": f"nodes.{ids[-1]}.output"}},
        "nodes": [{"id": "start", "type": "input"}, *nodes],
        "edges": [{"from": a, "to": b} for a, b in pairwise(ids)],
    }


async def test_an_image_call_is_a_generate_content_client_span(
    engine: ExecutionEngine, provider: FakeProviderServer, recorded: InMemorySpanExporter
) -> None:
    node = {
        "id": "render",
        "type": "image",
        "source": "openai-main",
        "config": {"prompt": "a red bicycle", "n": 2, "output": "url"},
    }
    events = await run_document(
        engine, spec(node), [llm_source("openai-main", "openai", provider.url)]
    )
    assert events[-1].type == "execution_completed"
    span = one(recorded, "generate_content fake-image")
    assert span.kind is SpanKind.CLIENT
    got = attributes(span)
    assert got["gen_ai.operation.name"] == "generate_content"
    assert got["gen_ai.provider.name"] == "openai"
    assert got["gen_ai.request.model"] == "fake-image"
    assert got["gen_ai.output.type"] == "image"
    assert got["gen_ai.request.choice.count"] == 2
    assert got["server.address"] == "127.0.0.1"
    assert span.parent is not None
    assert span.parent.span_id == one(recorded, "node render").context.span_id


async def test_an_http_error_status_fails_the_request_span_and_the_node_span(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi], recorded: InMemorySpanExporter
) -> None:
    crm_url, _ = crm_api
    node = {"id": "call", "type": "http", "source": "crm", "config": {"url": "/status/404"}}
    events = await run_document(engine, spec(node), [crm_source(crm_url)])
    assert error_of(events)["code"] == "http.rejected"
    request = one(recorded, "GET")
    assert attributes(request)["http.response.status_code"] == 404
    assert attributes(request)["error.type"] == "404"
    assert request.status.status_code is StatusCode.ERROR
    assert "crm-secret" not in str(attributes(request))
    node_span = one(recorded, "node call")
    assert attributes(node_span)["error.type"] == "http.rejected"


async def test_a_failed_statement_names_its_sqlstate_and_text_needs_the_content_setting(
    engine: ExecutionEngine, warehouse_dsn: str, recorded_with_content: InMemorySpanExporter
) -> None:
    node = {
        "id": "query",
        "type": "database",
        "source": "db",
        "config": {"query": "SELECT * FROM no_such_table WHERE id = $1", "params": ["7"]},
    }
    source = SourceDefinition(name="db", type="postgres", config={"dsn": warehouse_dsn})
    events = await run_document(engine, spec(node), [source], check_sources=False)
    assert error_of(events)["code"] == "database.sqlstate_42p01"
    statement = next(
        span for span in recorded_with_content.get_finished_spans() if span.kind is SpanKind.CLIENT
    )
    got = attributes(statement)
    assert got["db.system.name"] == "postgresql"
    assert got["db.operation.name"] == "SELECT"
    assert got["error.type"] == "database.sqlstate_42p01"
    assert got["db.query.text"] == "SELECT * FROM no_such_table WHERE id = $1"  # content on
    assert statement.status.status_code is StatusCode.ERROR


async def test_a_node_timing_out_is_node_deadline_exceeded(
    engine: ExecutionEngine, provider: FakeProviderServer, recorded: InMemorySpanExporter
) -> None:
    provider.add_rule(contains="[slow]", delay=5)
    node = {
        "id": "think",
        "type": "llm",
        "source": "openai-main",
        "timeout": 0.2,
        "config": {"prompt": "[slow]"},
    }
    events = await run_document(
        engine, spec(node), [llm_source("openai-main", "openai", provider.url)]
    )
    assert error_of(events)["code"] == "node.deadline_exceeded"
    node_span = one(recorded, "node think")
    assert attributes(node_span)["error.type"] == "node.deadline_exceeded"
    assert node_span.status.status_code is StatusCode.ERROR
    chat = one(recorded, "chat fake-model")  # cut short: cancelled, not an error of its own
    assert chat.status.status_code is StatusCode.UNSET
    assert "gen_ai.input.messages" not in attributes(chat)

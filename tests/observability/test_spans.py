"""The spans port (observability/spans.py): failures, trace ids, the W3C context across processes,
and that the layers using it load OpenTelemetry's API only, never its SDK."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.observability import spans


@pytest.fixture
def recorded() -> Iterator[InMemorySpanExporter]:
    """Every span, recorded in memory (installed in the port for the test)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    installed = spans.install(provider)
    yield exporter
    installed.uninstall()
    provider.shutdown()


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [span for span in exporter.get_finished_spans() if span.name == name]
    assert len(found) == 1, [span.name for span in exporter.get_finished_spans()]
    return found[0]


def test_without_tracing_set_up_spans_are_no_ops_and_there_is_no_trace() -> None:
    assert spans.current_trace_id() is None
    with spans.span("nothing") as span:
        assert not span.is_recording()
        assert spans.current_trace_id() is None
    assert spans.carrier() == {}


def test_a_failure_with_a_code_sets_error_type_and_the_error_status(
    recorded: InMemorySpanExporter,
) -> None:
    with pytest.raises(NodeFailure), spans.span("node n"):
        raise NodeFailure("provider.rate_limited", "slow down", retryable=True)
    span = only(recorded, "node n")
    assert span.attributes is not None
    assert span.attributes["error.type"] == "provider.rate_limited"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "slow down"


def test_an_exception_without_a_code_is_named_by_its_class(recorded: InMemorySpanExporter) -> None:
    with pytest.raises(KeyError), spans.span("crash"):
        raise KeyError("x")
    span = only(recorded, "crash")
    assert span.attributes is not None
    assert span.attributes["error.type"] == "KeyError"


async def test_cancellation_is_not_an_error(recorded: InMemorySpanExporter) -> None:
    async def cancelled() -> None:
        with spans.span("cancelled"):
            await asyncio.sleep(10)

    task = asyncio.create_task(cancelled())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = only(recorded, "cancelled")
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in (span.attributes or {})


def test_the_trace_and_span_ids_of_the_current_span(recorded: InMemorySpanExporter) -> None:
    with spans.span("outer") as span:
        context = span.get_span_context()
        assert spans.current_trace_id() == f"{context.trace_id:032x}"
        assert spans.current_ids() == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert spans.current_ids() is None


def test_a_carrier_continues_the_trace_elsewhere(recorded: InMemorySpanExporter) -> None:
    with spans.span("queued the job"):
        fields = spans.carrier()
    assert set(fields) == {"traceparent"}
    assert spans.current_trace_id() is None
    with spans.continued(fields), spans.span("ran the job"):
        pass
    queued, ran = only(recorded, "queued the job"), only(recorded, "ran the job")
    assert ran.context is not None
    assert queued.context is not None
    assert ran.context.trace_id == queued.context.trace_id
    assert ran.parent is not None
    assert ran.parent.span_id == queued.context.span_id
    assert spans.current_trace_id() is None  # the context is put back


@pytest.mark.parametrize("fields", [None, {}, {"tracestate": "a=b"}, {"traceparent": "junk"}])
def test_nothing_to_continue_starts_a_trace_of_its_own(
    recorded: InMemorySpanExporter, fields: dict[str, str] | None
) -> None:
    with spans.continued(fields), spans.span("fresh"):
        pass
    assert only(recorded, "fresh").parent is None


def test_an_uninstalled_provider_gives_way_to_the_one_before() -> None:
    before = spans.provider()
    first = spans.install(TracerProvider(shutdown_on_exit=False))
    second = spans.install(TracerProvider(shutdown_on_exit=False), content=True)
    assert spans.content_enabled()
    first.uninstall()  # not the current one: the later one stays
    assert spans.content_enabled()
    second.uninstall()
    first.uninstall()
    assert spans.provider() is before
    assert not spans.content_enabled()


def test_the_port_loads_opentelemetrys_api_only() -> None:
    """The layers below the composition root reach OpenTelemetry through the port alone (the
    import-linter contracts); the port itself loads no SDK, exporter or instrumentation.
    (Some libraries load the SDK on their own: redis-py for its optional metrics.)"""
    code = (
        "import json, sys\n"
        "import agentflow_grpc.observability.spans, agentflow_grpc.observability.logging\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('opentelemetry'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = json.loads(result.stdout)
    assert any(name.startswith("opentelemetry.trace") for name in loaded)
    assert not [
        name
        for name in loaded
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instr"))
    ]

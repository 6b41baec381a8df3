"""Setting the SDK up from the standard OTEL_* variables (observability/tracing.py), exporting
for real to a local OTLP receiver over both protocols."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.otlp import OtlpReceiver

from agentflow_grpc.observability import spans
from agentflow_grpc.observability.tracing import TracingConfigError, configure_tracing

OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)


@pytest.fixture(autouse=True)
def _no_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def test_without_an_endpoint_nothing_is_exported_yet_requests_get_trace_ids() -> None:
    tracing = configure_tracing()
    try:
        assert not tracing.exporting
        assert spans.provider() is tracing.provider
        with spans.span("request") as span:
            assert not span.is_recording()
            assert spans.current_trace_id() is not None  # for x-trace-id and the logs
    finally:
        tracing.close()
    assert spans.provider() is not tracing.provider


@pytest.mark.parametrize(
    ("variables", "protocol"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, "http/protobuf"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            "grpc",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            "http/protobuf",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none"},
            None,
        ),
    ],
)
def test_the_variables_choose_whether_and_how_to_export(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], protocol: str | None
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    tracing = configure_tracing()
    try:
        assert tracing.protocol == protocol
    finally:
        tracing.provider.shutdown()  # nothing was recorded: nothing waits for the closed port
        tracing.close()


def test_an_unknown_protocol_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(TracingConfigError, match="http/json"):
        configure_tracing()


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_spans_reach_an_otlp_receiver_over_either_protocol(
    monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver, protocol: str
) -> None:
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
    tracing = configure_tracing()
    try:
        with (
            spans.span("parent", attributes={"agentflow.test": 1}),
            spans.span("child", kind=spans.SpanKind.CLIENT),
        ):
            pass
        assert tracing.force_flush(10)
    finally:
        tracing.close()
    received = {span.name: span for span in receiver.spans()}
    assert set(received) == {"parent", "child"}
    parent, child = received["parent"], received["child"]
    assert child.trace_id == parent.trace_id
    assert child.parent_span_id == parent.span_id
    assert child.kind == "CLIENT"
    assert parent.attributes == {"agentflow.test": 1}
    assert parent.protocol == protocol
    assert parent.resource["service.name"] == "agentflow"  # no OTEL_SERVICE_NAME
    assert parent.resource["deployment.environment.name"] == "test"
    assert parent.scope == spans.TRACER_NAME


def test_the_service_name_and_the_sampler_come_from_the_variables(
    monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agentflow-eu")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    tracing = configure_tracing()
    try:
        with spans.span("dropped"):
            pass
        caller = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
        # always_off is not parent-based: even a sampled caller's span is dropped
        with spans.continued(caller), spans.span("also dropped") as span:
            assert spans.current_trace_id() == "0af7651916cd43dd8448eb211c80319c"
            assert not span.is_recording()
        assert tracing.provider.resource.attributes["service.name"] == "agentflow-eu"
    finally:
        tracing.close()
    assert receiver.spans() == []

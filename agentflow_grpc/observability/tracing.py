"""The OpenTelemetry SDK, set up once by the composition root (`app.open_app`).

Only the standard `OTEL_*` variables configure it, and the SDK reads them itself: the exporters
their endpoint, headers, timeout, compression and certificates; the tracer provider its sampler
(`OTEL_TRACES_SAMPLER`, `…_ARG`), span limits and `OTEL_SDK_DISABLED`; the resource
`OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`; the batch processor `OTEL_BSP_*`. This module
only decides whether to export and over which protocol:

- no `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` nor `OTEL_EXPORTER_OTLP_ENDPOINT` (or
  `OTEL_TRACES_EXPORTER=none`): no exporter. The provider samples nothing (ALWAYS_OFF), so spans
  are not recorded, yet each request still gets a trace id (or continues its caller's) for the
  `x-trace-id` header and the logs;
- otherwise a BatchSpanProcessor sends the spans over OTLP, `grpc` or `http/protobuf`
  (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`; default
  `http/protobuf`, as the specification says).

The provider is installed in `observability.spans` (not as OpenTelemetry's global provider), so
the layers below use it through that port, and an app closed puts back what was there before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from agentflow_grpc import __version__
from agentflow_grpc.observability import spans
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.tracing")

DEFAULT_SERVICE_NAME = "agentflow"
DEFAULT_PROTOCOL = "http/protobuf"
PROTOCOLS = ("grpc", "http/protobuf")


class TracingConfigError(ValueError):
    """The OTEL_* variables ask for what cannot be done (the app reports it as a configuration
    error)."""


@dataclass
class Tracing:
    """The tracer provider of one app, and whether it exports (and how)."""

    provider: TracerProvider
    protocol: str | None  # None: nothing is exported
    _installed: spans.Installed

    @property
    def exporting(self) -> bool:
        return self.protocol is not None

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Export every span ended so far; False if that took longer than `timeout_s`."""
        return self.provider.force_flush(int(timeout_s * 1000))

    def close(self) -> None:
        """Export what is left and stop (blocking: call it off the event loop)."""
        self._installed.uninstall()
        self.provider.shutdown()


def configure_tracing(
    *, content: bool = False, environ: Mapping[str, str] | None = None
) -> Tracing:
    """The tracer provider the `OTEL_*` variables ask for, installed for `observability.spans`.
    `content`: prompts and completions may be recorded (AGENTFLOW_TRACE_CONTENT)."""
    environ = os.environ if environ is None else environ
    exporter, protocol = _exporter(environ)
    if exporter is None:
        provider = TracerProvider(sampler=ALWAYS_OFF, resource=_resource(), shutdown_on_exit=False)
    else:
        provider = TracerProvider(resource=_resource(), shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        log.info(
            "tracing.exporting",
            protocol=protocol,
            endpoint=_shown(_endpoint(environ) or ""),
            sampler=environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
        )
    installed = spans.install(provider, content=content)
    return Tracing(provider, protocol, installed)


def _endpoint(environ: Mapping[str, str]) -> str | None:
    return (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or None
    )


def _exporter(environ: Mapping[str, str]) -> tuple[SpanExporter | None, str | None]:
    """The OTLP exporter the variables ask for, and its protocol; (None, None) for none."""
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None, None
    if _endpoint(environ) is None:
        return None, None
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or DEFAULT_PROTOCOL
    ).strip()
    # The exporters read the endpoint, headers, timeout, compression and certificates
    # from the same variables themselves.
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(), protocol
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter(), protocol
    raise TracingConfigError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not supported: use one of "
        + ", ".join(PROTOCOLS)
    )


def _resource() -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (read by the SDK), with our version, and
    `agentflow` as the service's name when neither names it."""
    resource = Resource.create({SERVICE_VERSION: __version__})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def _shown(endpoint: str) -> str:
    """An endpoint for the log: no user information, no query."""
    try:
        parts = urlsplit(endpoint)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable)"
    if not parts.scheme:
        return endpoint.partition("?")[0].rpartition("@")[2]
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"

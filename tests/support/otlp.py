"""A small OTLP trace receiver on 127.0.0.1: what a collector would get from AgentFlow's exporter.

`OtlpReceiver` listens on two free ports while open, one per OTLP protocol:

- http/protobuf: `POST /v1/traces` with an `application/x-protobuf` body (gzip too), decoded
  with the `opentelemetry-proto` messages and answered with an empty ExportTraceServiceResponse;
- grpc: the `opentelemetry.proto.collector.trace.v1.TraceService` servicer.

Both keep every request's raw bytes (`payloads()`, to look for what must never be exported)
and the spans flattened (`spans()`): ids as hex, kind and status as names, attributes and the
resource as plain Python values. Servers run in threads of their own, as the exporter does.

`python tests/support/otlp.py` runs one until interrupted (or SIGTERM) and prints a line per
span (for looking at traces by hand, and for the benchmark's export-on figures).
"""

from __future__ import annotations

import gzip
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    name: str
    kind: str  # SERVER, CLIENT, INTERNAL, …
    attributes: dict[str, Any]
    status: str  # UNSET, OK, ERROR
    status_message: str
    resource: dict[str, Any]
    scope: str
    protocol: str  # how it came: "http/protobuf" or "grpc"
    duration_ms: float = field(compare=False, default=0.0)


def _value(value: common_pb2.AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {item.key: _value(item.value) for item in value.kvlist_value.values}
    return getattr(value, which)


def _attributes(items: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


_KINDS = {
    trace_pb2.Span.SPAN_KIND_UNSPECIFIED: "UNSPECIFIED",
    trace_pb2.Span.SPAN_KIND_INTERNAL: "INTERNAL",
    trace_pb2.Span.SPAN_KIND_SERVER: "SERVER",
    trace_pb2.Span.SPAN_KIND_CLIENT: "CLIENT",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "PRODUCER",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
_STATUSES = {
    trace_pb2.Status.STATUS_CODE_UNSET: "UNSET",
    trace_pb2.Status.STATUS_CODE_OK: "OK",
    trace_pb2.Status.STATUS_CODE_ERROR: "ERROR",
}


def flatten(
    request: trace_service_pb2.ExportTraceServiceRequest, protocol: str
) -> list[ReceivedSpan]:
    found = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=_KINDS.get(span.kind, str(span.kind)),
                        attributes=_attributes(span.attributes),
                        status=_STATUSES.get(span.status.code, str(span.status.code)),
                        status_message=span.status.message,
                        resource=resource,
                        scope=scope_spans.scope.name,
                        protocol=protocol,
                        duration_ms=(span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
                    )
                )
    return found


class OtlpReceiver:
    """Receives OTLP traces over http/protobuf and grpc while open (a context manager)."""

    def __init__(self, on_span: Callable[[ReceivedSpan], None] | None = None) -> None:
        self._lock = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._payloads: list[bytes] = []
        self._on_span = on_span
        self._http: ThreadingHTTPServer | None = None
        self._grpc: grpc.Server | None = None
        self.http_port = 0
        self.grpc_port = 0

    # --- endpoints, for OTEL_EXPORTER_OTLP_ENDPOINT ---

    @property
    def http_endpoint(self) -> str:
        """The http/protobuf endpoint's base URL (the exporter adds /v1/traces)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    # --- what came ---

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def payloads(self) -> list[bytes]:
        """Every request body as it came over the wire (decompressed)."""
        with self._lock:
            return list(self._payloads)

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 30.0
    ) -> list[ReceivedSpan]:
        """The spans once `predicate` holds for them (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self._spans):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    names = sorted({span.name for span in self._spans})
                    raise AssertionError(f"spans never arrived; got {len(self._spans)}: {names}")
                self._lock.wait(remaining)
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._payloads.clear()

    def _received(self, body: bytes, protocol: str) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        spans = flatten(request, protocol)
        with self._lock:
            self._payloads.append(body)
            self._spans.extend(spans)
            self._lock.notify_all()
        if self._on_span is not None:
            for span in spans:
                self._on_span(span)

    # --- lifetime ---

    def __enter__(self) -> OtlpReceiver:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="otlp-http", daemon=True).start()
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace=None)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver._received(request.SerializeToString(), "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path != "/v1/traces":
                self._answer(404, b"", "text/plain")
                return
            if self.headers.get("content-type") != "application/x-protobuf":
                self._answer(415, b"", "text/plain")
                return
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            receiver._received(body, "http/protobuf")
            response = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self._answer(200, response, "application/x-protobuf")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


def main() -> None:
    def show(span: ReceivedSpan) -> None:
        parent = span.parent_span_id or "-" * 16
        print(
            f"{span.trace_id} {parent} -> {span.span_id} {span.kind:<8} {span.name} "
            f"({span.duration_ms:.1f} ms, {span.status})",
            flush=True,
        )

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave the `with`: servers stop
    with OtlpReceiver(on_span=show if "--quiet" not in sys.argv else None) as receiver:
        print(
            f"OTLP receiver: http/protobuf {receiver.http_endpoint}, grpc {receiver.grpc_endpoint}",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except (KeyboardInterrupt, SystemExit):
            pass
        print(f"{len(receiver.spans())} spans received", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Spans: the one way the code below the composition root talks to OpenTelemetry.

The layers under `app` (services, engine, compiler, nodes, sources, queue, …) import this module,
never `opentelemetry` itself (an import-linter contract), and it uses only OpenTelemetry's API:
which tracer provider records (the SDK's, exporting over OTLP, or one that records nothing) is
decided once by `observability.tracing`, from the standard `OTEL_*` variables, which installs it
here. Until then, and in code that never sets tracing up (`agentflow run`, most tests), every span
is OpenTelemetry's no-op span: nothing is recorded and nothing is paid for but a call.

- `span(name, kind=…, attributes=…, error_type=…)`: a span, current for the body; an exception
  leaving it sets `error.type` (`error_type(exc)` when given, else the exception's stable `code`
  when it has one, else its class name) and the ERROR status, with the exception's message.
  Cancellation is not an error.
- `current_trace_id()`, `current_ids()`: the current trace (and span) as lowercase hex, for the
  `x-trace-id` response header, the execution's stored trace id and every log line.
- `carrier()` / `continued(carrier)`: the W3C trace context (`traceparent`, `tracestate`) to hand
  work to another process (a queued job) and to continue it there.
- `content_enabled()`: whether prompts and completions may go into spans
  (`AGENTFLOW_TRACE_CONTENT`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TypeAlias

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

__all__ = [
    "AttributeValue",
    "Attributes",
    "Span",
    "SpanKind",
    "carrier",
    "content_enabled",
    "continued",
    "current_ids",
    "current_span",
    "current_trace_id",
    "fail",
    "install",
    "provider",
    "span",
]

Attributes: TypeAlias = Mapping[str, AttributeValue]

TRACER_NAME = "agentflow"
_STATUS_DESCRIPTION_LIMIT = 500
# Only W3C trace context travels with queued work (not baggage, whatever OTEL_PROPAGATORS says).
_W3C = TraceContextTextMapPropagator()


@dataclass(frozen=True, slots=True)
class _Tracing:
    provider: trace.TracerProvider
    tracer: trace.Tracer
    content: bool  # prompts and completions may be recorded


def _tracing_of(provider: trace.TracerProvider, *, content: bool) -> _Tracing:
    return _Tracing(provider, provider.get_tracer(TRACER_NAME), content)


_NO_OP = _tracing_of(trace.NoOpTracerProvider(), content=False)
_current = _NO_OP


class Installed:
    """What `install` returns: `uninstall()` puts back what was there before."""

    def __init__(self, installed: _Tracing, previous: _Tracing) -> None:
        self._installed = installed
        self._previous = previous

    def uninstall(self) -> None:
        global _current
        if _current is self._installed:  # a later install that is still in place stays
            _current = self._previous


def install(tracer_provider: trace.TracerProvider, *, content: bool = False) -> Installed:
    """Make `tracer_provider` the one spans come from (observability.tracing calls this)."""
    global _current
    previous = _current
    _current = _tracing_of(tracer_provider, content=content)
    return Installed(_current, previous)


def provider() -> trace.TracerProvider:
    """The tracer provider in use (for instrumentations that take one: the gRPC server's)."""
    return _current.provider


def content_enabled() -> bool:
    """Whether prompt and completion text may be recorded in spans (off by default)."""
    return _current.content


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes | None = None,
    error_type: Callable[[Exception], str] | None = None,
) -> _SpanScope:
    """A span named `name`, current for the body (see the module doc for failures)."""
    return _SpanScope(name, kind, attributes, error_type)


class _SpanScope:
    """`span()`'s context manager. A class rather than a generator around the tracer's
    `start_as_current_span` (itself two generator layers): spans are opened on every node
    and provider call, and this is a third of the main thread's cost per span."""

    __slots__ = ("_attributes", "_error_type", "_kind", "_name", "_span", "_token")

    def __init__(
        self,
        name: str,
        kind: SpanKind,
        attributes: Attributes | None,
        error_type: Callable[[Exception], str] | None,
    ) -> None:
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._error_type = error_type

    def __enter__(self) -> Span:
        self._span = current = _current.tracer.start_span(
            self._name,
            kind=self._kind,
            attributes=self._attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        self._token = otel_context.attach(trace.set_span_in_context(current))
        return current

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        current = self._span
        try:
            if isinstance(exc, Exception) and current.is_recording():
                message = getattr(exc, "message", None)
                fail(
                    current,
                    _error_type(exc) if self._error_type is None else self._error_type(exc),
                    message if isinstance(message, str) else str(exc),
                )
        finally:
            current.end()
            otel_context.detach(self._token)


def _error_type(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and code else type(exc).__qualname__


def fail(target: Span, error_type: str, message: str = "") -> None:
    """Mark `target` failed: `error.type` and the ERROR status (the message, shortened)."""
    target.set_attribute("error.type", error_type)
    target.set_status(Status(StatusCode.ERROR, message[:_STATUS_DESCRIPTION_LIMIT] or None))


def current_span() -> Span:
    """The span current here (a non-recording one when there is none)."""
    return trace.get_current_span()


def current_trace_id() -> str | None:
    """The current trace id as 32 lowercase hex digits; None outside any trace."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def current_ids() -> tuple[str, str] | None:
    """The current trace id and span id (32 and 16 hex digits); None outside any trace."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


def carrier() -> dict[str, str]:
    """The current W3C trace context (`traceparent`, and `tracestate` when there is one);
    empty outside any trace."""
    fields: dict[str, str] = {}
    _W3C.inject(fields)
    return fields


@contextmanager
def continued(fields: Mapping[str, str] | None) -> Iterator[None]:
    """Continue the trace whose W3C context `fields` holds (from `carrier()`, maybe in another
    process): spans started in the body are its children. Nothing to continue: the body runs
    in the context it has."""
    if not fields or "traceparent" not in fields:
        yield
        return
    token = otel_context.attach(_W3C.extract(fields))
    try:
        yield
    finally:
        otel_context.detach(token)

